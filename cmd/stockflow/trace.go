package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	flowshttp "github.com/stockflow/stockflow/internal/flows/adapters/http"
	"github.com/stockflow/stockflow/internal/flows/domain"
)

const traceAbout = `Prints the journey of an order, a flow, a message or a batch across the
services, from the flows service's journal (GET /flows): each message
indented under the one that caused it, with the service that raised it,
its channel, its business keys and when it happened, then what each
handler did with it (handled, a duplicate skipped, dead-lettered with the
reason) and how long it took. ID is an order id, a correlation id, a
message id or a batch ref: the first the journal knows, in that order.

  stockflow trace 01a2...        an order's journey, every flow it took part in
  stockflow trace --json ID      the same as JSON, for scripts
  stockflow trace --follow ID    and keep printing new messages as they come`

func trace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flagSet("trace", traceAbout, stderr)
	base := fs.String("url", "http://127.0.0.1:5005", "`URL` of the stockflow HTTP API (the flows service's)")
	asJSON := fs.Bool("json", false, "print the trace as JSON")
	follow := fs.Bool("follow", false, "keep printing the messages that join the trace, until interrupted")
	every := fs.Duration("retry", 2*time.Second, "how long --follow waits before following again a stream that broke")
	key := keyFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stockflow trace [flags] ID\n\n%s\n\nFlags:\n", traceAbout)
		fs.PrintDefaults()
	}
	// The ID comes first or last: stockflow trace ID --json, or
	// stockflow trace --json ID.
	var id string
	switch {
	case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
		id, args = args[0], args[1:]
	case len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") && !takesValue(fs, args):
		id, args = args[len(args)-1], args[:len(args)-1]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if id == "" {
		return usageError{errors.New("trace takes one ID: an order id, a correlation id, a message id or a batch ref")}
	}
	if *every <= 0 {
		return usageError{errors.New("--retry must be positive")}
	}
	c := traceClient{base: strings.TrimSuffix(*base, "/"), key: *key}
	param, nodes, err := c.find(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON && !*follow {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(nodes)
	}
	p := tracePrinter{w: stdout, json: *asJSON, seen: map[string]bool{}}
	p.print(nodes)
	if !*follow {
		return nil
	}
	for {
		err := c.stream(ctx, param, id, p.event)
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintln(stderr, "stockflow trace:", err, "; again in", *every)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*every):
		}
	}
}

// stream follows GET /flows/stream?param=id, handing each event to fn,
// until ctx is done or the stream ends.
func (c traceClient) stream(ctx context.Context, param, id string, fn func(flowshttp.Event)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/flows/stream?"+url.Values{param: {id}}.Encode(), nil)
	if err != nil {
		return err
	}
	bearer(req, c.key)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", c.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered the stream with %s", c.base, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e flowshttp.Event
		if json.Unmarshal([]byte(data), &e) == nil {
			fn(e)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the stream ended")
}

// takesValue reports whether the last of args is the value of the flag
// before it (--url http://x), not an ID.
func takesValue(fs *flag.FlagSet, args []string) bool {
	if len(args) < 2 {
		return false
	}
	name := strings.TrimLeft(args[len(args)-2], "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

var errNoFlow = errors.New("no flow")

type traceClient struct{ base, key string }

// find asks for the flows of id as an order, a correlation id, a message
// id, then a batch ref, and returns the first that the journal knows.
func (c traceClient) find(ctx context.Context, id string) (string, []*domain.Node, error) {
	for _, param := range []string{"order", "correlation", "message", "batch"} {
		nodes, err := c.get(ctx, param, id)
		if errors.Is(err, errNoFlow) {
			continue
		}
		return param, nodes, err
	}
	return "", nil, fmt.Errorf("the journal at %s has no order, flow, message or batch %s (is the flows service running, and did it see it?)", c.base, id)
}

// get asks GET /flows?param=id; errNoFlow when the journal has none.
func (c traceClient) get(ctx context.Context, param, id string) ([]*domain.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/flows?"+url.Values{param: {id}}.Encode(), nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("--url: %w", err)}
	}
	bearer(req, c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", c.base, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var nodes []*domain.Node
		if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
			return nil, fmt.Errorf("%s answered a trace that is not one: %w", c.base, err)
		}
		return nodes, nil
	case http.StatusNotFound:
		var m struct{ Message string }
		if json.NewDecoder(resp.Body).Decode(&m) == nil && strings.Contains(m.Message, "journal") {
			return nil, errNoFlow
		}
		return nil, fmt.Errorf("%s has no GET /flows: is it a stockflow running the flows service?", c.base)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%s refused the trace (%s): give --key (or STOCKFLOW_KEY), a key with the ops role", c.base, resp.Status)
	}
	var m struct{ Message string }
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return nil, fmt.Errorf("%s answered %s: %s", c.base, resp.Status, m.Message)
}

// tracePrinter prints the messages of traces it was not shown before.
type tracePrinter struct {
	w    io.Writer
	json bool
	seen map[string]bool // message ids, and handlings by message+handler+outcome
}

func (p *tracePrinter) print(nodes []*domain.Node) {
	var walk func(ns []*domain.Node, depth int)
	walk = func(ns []*domain.Node, depth int) {
		for _, n := range ns {
			if !p.seen[n.ID] {
				p.seen[n.ID] = true
				p.message(n, depth)
			}
			for _, h := range n.Handlings {
				k := h.MessageID + " " + h.Handler + " " + h.Outcome + " " + h.At.String()
				if !p.seen[k] {
					p.seen[k] = true
					p.handling(h, depth)
				}
			}
			walk(n.Children, depth+1)
		}
	}
	walk(nodes, 0)
}

// event prints a live stream's event, unless it was printed before.
func (p *tracePrinter) event(e flowshttp.Event) {
	switch {
	case e.Message != nil && !p.seen[e.Message.ID]:
		p.seen[e.Message.ID] = true
		p.message(&domain.Node{Message: *e.Message, HopMS: e.HopMS}, e.Depth)
	case e.Handling != nil:
		h := *e.Handling
		k := h.MessageID + " " + h.Handler + " " + h.Outcome + " " + h.At.String()
		if !p.seen[k] {
			p.seen[k] = true
			p.handling(h, e.Depth)
		}
	}
}

func (p *tracePrinter) message(n *domain.Node, depth int) {
	if p.json {
		line, _ := json.Marshal(struct {
			Depth int `json:"depth"`
			domain.Message
		}{depth, n.Message})
		fmt.Fprintf(p.w, "%s\n", line)
		return
	}
	from := n.Producer
	if from == "" {
		from = "outside"
	}
	var keys []string
	for _, kv := range [][2]string{{"order", short(n.Order)}, {"customer", n.Customer}, {"sku", n.SKU}, {"batch", n.Batch}} {
		if kv[1] != "" {
			keys = append(keys, kv[0]+" "+kv[1])
		}
	}
	if n.Qty != 0 {
		keys = append(keys, fmt.Sprintf("qty %d", n.Qty))
	}
	at := ""
	if !n.OccurredAt.IsZero() {
		at = n.OccurredAt.Local().Format("15:04:05.000")
	}
	hop := ""
	if depth > 0 {
		hop = fmt.Sprintf(" (+%s)", ms(n.HopMS))
	}
	mark := ""
	if n.Failed() {
		mark = "  !! DEAD-LETTERED"
	}
	fmt.Fprintf(p.w, "%s%s → %s  %s  %s%s%s\n", strings.Repeat("    ", depth), from, n.Channel, strings.Join(keys, ", "), at, hop, mark)
}

func (p *tracePrinter) handling(h domain.Handling, depth int) {
	if p.json {
		line, _ := json.Marshal(struct {
			Depth int `json:"depth"`
			domain.Handling
		}{depth, h})
		fmt.Fprintf(p.w, "%s\n", line)
		return
	}
	indent := strings.Repeat("    ", depth) + "  "
	switch h.Outcome {
	case domain.DeadLettered:
		fmt.Fprintf(p.w, "%s✗ %s  DEAD-LETTERED after %d attempts: %s\n", indent, h.Handler, h.Attempts, h.Reason)
	case domain.Duplicate:
		fmt.Fprintf(p.w, "%s↺ %s  duplicate, skipped\n", indent, h.Handler)
	default:
		fmt.Fprintf(p.w, "%s✓ %s  %s in %s\n", indent, h.Handler, h.Outcome, ms(h.DurationMS))
	}
	for _, t := range h.Timers {
		fmt.Fprintf(p.w, "%s    ⏱ %s  due at %s\n", indent, t.Channel, t.DueAt.Local().Format("15:04:05"))
	}
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// short shortens a UUID to its last 12 characters, which differ between
// ids made in the same millisecond.
func short(id string) string {
	if len(id) == 36 && strings.Count(id, "-") == 4 {
		return "…" + id[24:]
	}
	return id
}
