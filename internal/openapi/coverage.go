package openapi

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Unrouted is the route Coverage counts the requests no route takes under.
const Unrouted = "(no route)"

// Coverage is what a Validator's exchanges exercised: for each route and
// status, how many answers; and the statuses the document gives each
// route.
type Coverage struct {
	// Seen counts the answers by route (mux pattern) and status.
	Seen map[string]map[int]*Count
	// Documented lists each route's documented statuses.
	Documented map[string][]int
}

// Count counts the answers of a route and status, and how many of their
// requests the document accepted.
type Count struct {
	Answers, ValidRequests int
}

func newCoverage(d *Document) Coverage {
	c := Coverage{Seen: map[string]map[int]*Count{}, Documented: map[string][]int{}}
	for _, p := range d.Patterns() {
		for code := range d.Operation(p).Responses.Map() {
			if n, err := strconv.Atoi(code); err == nil {
				c.Documented[p] = append(c.Documented[p], n)
			}
		}
		slices.Sort(c.Documented[p])
	}
	return c
}

func (c *Coverage) add(route string, status int, valid bool) {
	if c.Seen[route] == nil {
		c.Seen[route] = map[int]*Count{}
	}
	n := c.Seen[route][status]
	if n == nil {
		n = &Count{}
		c.Seen[route][status] = n
	}
	n.Answers++
	if valid {
		n.ValidRequests++
	}
}

func (c Coverage) clone() Coverage {
	out := Coverage{Seen: map[string]map[int]*Count{}, Documented: c.Documented}
	for r, byStatus := range c.Seen {
		out.Seen[r] = map[int]*Count{}
		for s, n := range byStatus {
			cp := *n
			out.Seen[r][s] = &cp
		}
	}
	return out
}

// Missed returns the documented statuses of route that no exchange
// produced.
func (c Coverage) Missed(route string) []int {
	var out []int
	for _, s := range c.Documented[route] {
		if c.Seen[route][s] == nil {
			out = append(out, s)
		}
	}
	return out
}

// String is a table of each route: the statuses exercised, with their
// counts (and how many of those requests the document refuses, when
// some), then the statuses documented only.
func (c Coverage) String() string {
	var b strings.Builder
	routes := slices.Sorted(maps.Keys(c.Documented))
	if c.Seen[Unrouted] != nil {
		routes = append(routes, Unrouted)
	}
	total, exercised := 0, 0
	for _, r := range routes {
		var seen []string
		for _, s := range slices.Sorted(maps.Keys(c.Seen[r])) {
			n := c.Seen[r][s]
			item := fmt.Sprintf("%d×%d", s, n.Answers)
			if bad := n.Answers - n.ValidRequests; bad > 0 && r != Unrouted {
				item += fmt.Sprintf(" (%d refused by the document)", bad)
			}
			seen = append(seen, item)
		}
		missed := c.Missed(r)
		total += len(c.Documented[r])
		exercised += len(c.Documented[r]) - len(missed)
		fmt.Fprintf(&b, "%-45s exercised: %s", r, orNone(strings.Join(seen, ", ")))
		if len(missed) > 0 {
			fmt.Fprintf(&b, "; documented only: %s", strings.Trim(fmt.Sprint(missed), "[]"))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%d of %d documented statuses exercised\n", exercised, total)
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
