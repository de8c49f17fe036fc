package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/stockflow/stockflow/internal/auth"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/platform"
)

// console is the dead-letter console over the services of one process (or
// the databases the CLI opened): each service's dead letters are its own,
// sent again to it alone.
type console struct {
	names []string
	svcs  map[string]platform.Service
}

func newConsole(names []string, svcs []platform.Service) *console {
	c := &console{names: names, svcs: map[string]platform.Service{}}
	for i, n := range names {
		c.svcs[n] = svcs[i]
	}
	return c
}

// filter selects dead letters across services.
type filter struct {
	Service string `json:"service,omitempty"`
	Channel string `json:"channel,omitempty"`
	Group   string `json:"group,omitempty"`
	// State is failed (the default), retried, archived or all.
	State string `json:"state,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

func (f filter) query() (messaging.DeadLetterQuery, error) {
	q := messaging.DeadLetterQuery{Channel: f.Channel, Group: f.Group, Limit: f.Limit}
	switch f.State {
	case "", messaging.DeadLetterFailed:
	case messaging.DeadLetterRetried, messaging.DeadLetterArchived:
		q.States = []string{f.State}
	case "all":
		q.States = []string{messaging.DeadLetterFailed, messaging.DeadLetterRetried, messaging.DeadLetterArchived}
	default:
		return q, fail.Errorf(fail.Invalid, "state must be failed, retried, archived or all, got %q", f.State)
	}
	if f.Limit < 0 {
		return q, fail.Errorf(fail.Invalid, "limit must not be negative, got %d", f.Limit)
	}
	return q, nil
}

// services returns the services f names (all when none), in order.
func (c *console) services(name string) ([]string, error) {
	if name == "" {
		return c.names, nil
	}
	if _, ok := c.svcs[name]; !ok {
		return nil, fail.Errorf(fail.NotFound, "no service %s here (this process runs %s)", name, strings.Join(c.names, ", "))
	}
	return []string{name}, nil
}

// list returns the dead letters f selects, newest first.
func (c *console) list(ctx context.Context, f filter) ([]messaging.DeadLetter, error) {
	q, err := f.query()
	if err != nil {
		return nil, err
	}
	names, err := c.services(f.Service)
	if err != nil {
		return nil, err
	}
	all := []messaging.DeadLetter{}
	for _, n := range names {
		list, err := c.svcs[n].FindDeadLetters(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		all = append(all, list...)
	}
	slices.SortStableFunc(all, func(a, b messaging.DeadLetter) int {
		return cmp.Or(b.FailedAt.Compare(a.FailedAt), cmp.Compare(b.ID, a.ID))
	})
	if f.Limit > 0 && len(all) > f.Limit {
		all = all[:f.Limit]
	}
	return all, nil
}

// groups returns the groups of the dead letters f selects.
func (c *console) groups(ctx context.Context, f filter) ([]messaging.DeadLetterGroup, error) {
	f.Limit = 0
	list, err := c.list(ctx, f)
	if err != nil {
		return nil, err
	}
	return messaging.GroupDeadLetters(list), nil
}

// show returns one dead letter.
func (c *console) show(ctx context.Context, service string, id int64) (messaging.DeadLetter, error) {
	names, err := c.services(service)
	if err != nil {
		return messaging.DeadLetter{}, err
	}
	list, err := c.svcs[names[0]].FindDeadLetters(ctx, messaging.DeadLetterQuery{IDs: []int64{id}})
	if err != nil {
		return messaging.DeadLetter{}, err
	}
	if len(list) == 0 {
		return messaging.DeadLetter{}, fail.Errorf(fail.NotFound, "%s has no dead letter %d", service, id)
	}
	return list[0], nil
}

// selection is the dead letters a retry or discard acts on: ids of one
// service, or every one f selects (a group, or all).
type selection struct {
	filter
	IDs    []int64 `json:"ids,omitempty"`
	All    bool    `json:"all,omitempty"`
	DryRun bool    `json:"dry_run,omitempty"`
	Force  bool    `json:"force,omitempty"`
}

// byService returns the ids s selects, per service, in the console's order.
func (c *console) byService(ctx context.Context, s selection) ([]string, map[string][]int64, error) {
	out := map[string][]int64{}
	if len(s.IDs) > 0 {
		if s.Service == "" {
			return nil, nil, fail.Errorf(fail.Invalid, "ids are each service's own: name the service")
		}
		if _, err := c.services(s.Service); err != nil {
			return nil, nil, err
		}
		out[s.Service] = s.IDs
		return []string{s.Service}, out, nil
	}
	if s.Group == "" && !s.All {
		return nil, nil, fail.Errorf(fail.Invalid, "name the dead letters: ids, a group, or all")
	}
	list, err := c.list(ctx, s.filter)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range list {
		out[d.Consumer] = append(out[d.Consumer], d.ID)
	}
	var names []string
	for _, n := range c.names {
		if len(out[n]) > 0 {
			names = append(names, n)
		}
	}
	// A service's "local" dead letters (its own event handlers') list
	// under its consumer name "local": they are not sent again yet.
	return names, out, nil
}

// retry sends again the dead letters s selects, each to the service that
// failed it.
func (c *console) retry(ctx context.Context, s selection) ([]messaging.RetryResult, error) {
	names, ids, err := c.byService(ctx, s)
	if err != nil {
		return nil, err
	}
	out := []messaging.RetryResult{}
	for _, n := range names {
		res, err := c.svcs[n].RetryDeadLetters(ctx, ids[n], messaging.RetryOptions{DryRun: s.DryRun, Force: s.Force})
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// discard archives the dead letters s selects, by whom.
func (c *console) discard(ctx context.Context, s selection, by string) ([]messaging.DeadLetter, error) {
	names, ids, err := c.byService(ctx, s)
	if err != nil {
		return nil, err
	}
	out := []messaging.DeadLetter{}
	for _, n := range names {
		list, err := c.svcs[n].DiscardDeadLetters(ctx, ids[n], by)
		out = append(out, list...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// deadLetterRoutes adds the console's routes over the services of the
// process.
func deadLetterRoutes(mux httpx.Mux, c *console, log *slog.Logger) {
	answer := func(w http.ResponseWriter, r *http.Request, err error) { httpx.Fail(w, r, log, err) }
	filterOf := func(r *http.Request) (filter, error) {
		q := r.URL.Query()
		f := filter{Service: q.Get("service"), Channel: q.Get("channel"), Group: q.Get("group"), State: q.Get("state")}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 0 {
				return f, invalid(fmt.Sprintf("limit must be a whole number, got %q", l))
			}
			f.Limit = n
		}
		return f, nil
	}
	target := func(r *http.Request) (string, int64, error) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			return "", 0, invalid(fmt.Sprintf("a dead letter's id is a positive number, got %q", r.PathValue("id")))
		}
		return r.PathValue("service"), id, nil
	}
	mux.HandleFunc("GET /dead-letters", func(w http.ResponseWriter, r *http.Request) {
		f, err := filterOf(r)
		if err != nil {
			answer(w, r, err)
			return
		}
		groups, err := c.groups(r.Context(), f)
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"groups": groups})
	})
	mux.HandleFunc("GET /dead-letters/list", func(w http.ResponseWriter, r *http.Request) {
		f, err := filterOf(r)
		if err == nil && f.Limit == 0 {
			f.Limit = 100
		}
		var list []messaging.DeadLetter
		if err == nil {
			list, err = c.list(r.Context(), f)
		}
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"dead_letters": list})
	})
	mux.HandleFunc("GET /dead-letters/{service}/{id}", func(w http.ResponseWriter, r *http.Request) {
		service, id, err := target(r)
		var d messaging.DeadLetter
		if err == nil {
			d, err = c.show(r.Context(), service, id)
		}
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, d)
	})
	flag := func(r *http.Request, name string) bool {
		v, _ := strconv.ParseBool(r.URL.Query().Get(name))
		return v
	}
	mux.HandleFunc("POST /dead-letters/{service}/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		service, id, err := target(r)
		var res []messaging.RetryResult
		if err == nil {
			res, err = c.retry(r.Context(), selection{filter: filter{Service: service}, IDs: []int64{id},
				DryRun: flag(r, "dry_run"), Force: flag(r, "force")})
		}
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"results": res})
	})
	mux.HandleFunc("POST /dead-letters/{service}/{id}/discard", func(w http.ResponseWriter, r *http.Request) {
		service, id, err := target(r)
		var list []messaging.DeadLetter
		if err == nil {
			list, err = c.discard(r.Context(), selection{filter: filter{Service: service}, IDs: []int64{id}}, caller(r))
		}
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, list[0])
	})
	mux.HandleFunc("POST /dead-letters/retry", func(w http.ResponseWriter, r *http.Request) {
		var s selection
		if err := httpx.Decode(r, &s); err != nil {
			httpx.DecodeError(w, err)
			return
		}
		res, err := c.retry(r.Context(), s)
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"results": res})
	})
	mux.HandleFunc("POST /dead-letters/discard", func(w http.ResponseWriter, r *http.Request) {
		var s selection
		if err := httpx.Decode(r, &s); err != nil {
			httpx.DecodeError(w, err)
			return
		}
		list, err := c.discard(r.Context(), s, caller(r))
		if err != nil {
			answer(w, r, err)
			return
		}
		httpx.JSON(w, http.StatusOK, map[string]any{"discarded": list})
	})
}

// invalid is an invalid request's error.
func invalid(msg string) error { return fail.New(fail.Invalid, msg) }

// caller names who made the request: the API key's name, else "http".
func caller(r *http.Request) string {
	if p, ok := auth.From(r.Context()); ok && p.Name != "" {
		return p.Name
	}
	return "http"
}
