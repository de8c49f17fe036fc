package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const loadAbout = `Drives a running stockflow with POST /allocate from --connections
concurrent connections over --skus skus (one batch each, stocked with
--stock units), for --duration, and reports the throughput, the answers by
status and the latency. With --pid, also reports that process's peak RSS.

It ADDS to the target what it needs and leaves it there: --skus batches
(load-<run>-sku-N-batch) of --stock units, and every order line it
allocates. Against an address that is not this machine's (not loopback)
it asks for --yes first.

  stockflow up &
  stockflow load --connections 16 --skus 100 --duration 10s`

func load(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flagSet("load", loadAbout, stderr)
	base := fs.String("url", "http://127.0.0.1:5005", "`URL` of the stockflow HTTP API")
	conns := fs.Int("connections", 16, "concurrent connections")
	skus := fs.Int("skus", 100, "skus to spread the allocations over")
	stock := fs.Int("stock", 1_000_000_000, "units in each sku's batch")
	qty := fs.Int("qty", 1, "units per order line")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	warmup := fs.Duration("warmup", time.Second, "load run before measuring")
	pid := fs.Int("pid", 0, "`pid` of the server, to report its peak RSS")
	yes := fs.Bool("yes", false, "drive a stockflow that is not on this machine (it adds batches and order lines there)")
	key := keyFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	target, err := url.Parse(*base)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return usageError{fmt.Errorf("--url %q: want http://host:port", *base)}
	}
	if !*yes && !loopback(target.Hostname()) {
		return usageError{fmt.Errorf("%s is not on this machine: load adds %d batches of %d units and every line it allocates there; run again with --yes to do it", *base, *skus, *stock)}
	}
	if *conns < 1 || *skus < 1 || *qty < 1 || *duration <= 0 {
		return usageError{fmt.Errorf("--connections, --skus, --qty and --duration must be positive")}
	}
	run := randomHex(4)
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns},
	}
	root := strings.TrimSuffix(*base, "/")
	post := func(path string, b []byte) (int, error) {
		req, err := http.NewRequest(http.MethodPost, root+path, bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		bearer(req, *key)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	names := make([]string, *skus)
	for i := range names {
		names[i] = fmt.Sprintf("load-%s-sku-%d", run, i)
		body, _ := json.Marshal(map[string]any{"ref": names[i] + "-batch", "sku": names[i], "qty": *stock, "eta": nil})
		status, err := post("/add_batch", body)
		if err != nil {
			return fmt.Errorf("cannot connect to %s: %w", *base, errors.Unwrap(err))
		}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			return fmt.Errorf("adding batch for %s: %s answered %d: give --key (or STOCKFLOW_KEY), a key with the stock role", names[i], *base, status)
		}
		if status != http.StatusCreated {
			return fmt.Errorf("adding batch for %s: %s answered %d, want 201", names[i], *base, status)
		}
	}

	type result struct {
		status  map[int]int
		errors  int
		latency []time.Duration
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		total   = result{status: map[int]int{}}
		start   = time.Now()
		measure = start.Add(*warmup)
		end     = measure.Add(*duration)
	)
	for c := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := result{status: map[int]int{}}
			rnd := mrand.New(mrand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			prefix := fmt.Sprintf(`{"orderid":"load-%s-%d-`, run, c)
			var body []byte
			for n := 0; ctx.Err() == nil; n++ {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				// {"orderid":"load-<run>-<c>-<n>","sku":"<sku>","qty":<qty>}
				body = append(body[:0], prefix...)
				body = strconv.AppendInt(body, int64(n), 10)
				body = append(body, `","sku":`...)
				body = strconv.AppendQuote(body, names[rnd.IntN(len(names))])
				body = append(body, `,"qty":`...)
				body = strconv.AppendInt(body, int64(*qty), 10)
				body = append(body, '}')
				status, err := post("/allocate", body)
				if t0.Before(measure) {
					continue
				}
				if err != nil {
					r.errors++
					continue
				}
				r.status[status]++
				r.latency = append(r.latency, time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			for s, n := range r.status {
				total.status[s] += n
			}
			total.errors += r.errors
			total.latency = append(total.latency, r.latency...)
		}()
	}
	wg.Wait()
	elapsed := min(time.Since(measure), *duration)
	slices.Sort(total.latency)
	n := len(total.latency)
	fmt.Fprintf(stdout, "POST /allocate: %d connections, %d skus, %s\n", *conns, *skus, elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "requests: %d  (%.0f per second)\n", n+total.errors, float64(n)/elapsed.Seconds())
	var statuses []int
	for s := range total.status {
		statuses = append(statuses, s)
	}
	slices.Sort(statuses)
	for _, s := range statuses {
		fmt.Fprintf(stdout, "  status %d: %d\n", s, total.status[s])
	}
	if total.errors > 0 {
		fmt.Fprintf(stdout, "  transport errors: %d\n", total.errors)
	}
	if n > 0 {
		fmt.Fprintf(stdout, "latency: p50 %s  p99 %s  max %s\n", pct(total.latency, 50), pct(total.latency, 99), total.latency[n-1].Round(time.Microsecond))
	}
	if *pid > 0 {
		if rss, err := peakRSS(*pid); err == nil {
			fmt.Fprintf(stdout, "server peak RSS: %s\n", rss)
		} else {
			fmt.Fprintf(stdout, "server peak RSS: %v\n", err)
		}
	}
	bad := total.errors
	for s, c := range total.status {
		if s >= 500 {
			bad += c
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d requests failed with a 5xx or a transport error", bad)
	}
	return nil
}

// keyFlag adds --key, the credential a command sends to the HTTP API.
func keyFlag(fs *flag.FlagSet) *string {
	return fs.String("key", "", "API `key` (or JWT) sent as Authorization: Bearer, when the API requires one")
}

// bearer sets req's credential, if any.
func bearer(req *http.Request, key string) {
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(i, 0)].Round(time.Microsecond)
}

func peakRSS(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
