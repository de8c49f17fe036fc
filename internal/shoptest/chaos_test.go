package shoptest_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation"
	"github.com/stockflow/stockflow/internal/crm"
	"github.com/stockflow/stockflow/internal/notifications"
	"github.com/stockflow/stockflow/internal/orders"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/shoptest"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/chaos"
	"github.com/stockflow/stockflow/internal/warehouse"
)

// The five services in this process, each with its SQLite file, on the
// chaos broker: deliveries delayed, reordered across channels and keys,
// duplicated and rewound, and services stopped and started again along
// the way. STOCKFLOW_CHAOS_SEED replays a run's workload;
// STOCKFLOW_CHAOS_OPS sets its length.
func TestShopUnderChaos(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if s := os.Getenv("STOCKFLOW_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STOCKFLOW_CHAOS_SEED=%q: %v", s, err)
		}
		seeds = []uint64{n}
	}
	ops := 60
	if s := os.Getenv("STOCKFLOW_CHAOS_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("STOCKFLOW_CHAOS_OPS=%q: %v", s, err)
		}
		ops = n
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runChaos(t, seed, ops)
		})
	}
}

func runChaos(t *testing.T, seed uint64, ops int) {
	ctx := t.Context()
	broker := chaos.New(chaos.Options{Seed: seed, MaxDelay: 3 * time.Millisecond, DuplicateRate: 0.05, RewindRate: 0.03})
	t.Cleanup(func() { broker.Close() })
	sh := &inProcessShop{t: t, dir: t.TempDir(), broker: broker, svcs: map[string]*running{}}
	for _, name := range names {
		broker.Declare(name) // a service away keeps its place
		if err := sh.start(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(sh.stopAll)
	srv := httptest.NewServer(http.HandlerFunc(sh.serveHTTP))
	t.Cleanup(srv.Close)
	s := shoptest.Shop{URL: func(string) string { return srv.URL }, Client: srv.Client()}

	h, err := shoptest.Run(ctx, s, shoptest.Workload{
		Seed: seed, Ops: ops, Workers: 4,
		Disrupt: func(ctx context.Context, rng *rand.Rand) error {
			return sh.restart(ctx, names[rng.IntN(len(names))])
		},
	})
	t.Logf("seed %d: %s; broker %+v", seed, h.Summary(), broker.Stats())
	if err != nil {
		t.Fatalf("seed %d: the workload failed: %v", seed, err)
	}
	problems, err := shoptest.Agree(ctx, s, h, 60*time.Second)
	if err != nil {
		t.Fatalf("seed %d: checking: %v", seed, err)
	}
	// Nothing the workload sends is bad input: no message may have been
	// given up on.
	for _, p := range sh.deadLetters(ctx) {
		problems = append(problems, p)
	}
	for _, p := range problems {
		t.Errorf("seed %d: %s", seed, p)
	}
	if len(problems) > 0 {
		t.Logf("replay with STOCKFLOW_CHAOS_SEED=%d STOCKFLOW_CHAOS_OPS=%d go test -race -run 'TestShopUnderChaos' ./internal/shoptest", seed, ops)
	}
}

var names = []string{"allocation", "orders", "warehouse", "crm", "notifications"}

// inProcessShop runs the services, and serves their routes on one handler
// that waits while one of them restarts.
type inProcessShop struct {
	t      *testing.T
	dir    string
	broker *chaos.Transport

	mu   sync.RWMutex // held for writing while a service restarts
	svcs map[string]*running
	mux  *http.ServeMux
}

type running struct {
	svc  platform.Service
	stop context.CancelFunc
	done chan error
}

func (sh *inProcessShop) open(ctx context.Context, name string) (platform.Service, error) {
	cfg := platform.Config{DataDir: sh.dir, Transport: sh.broker, Log: testenv.Logger(sh.t, slog.LevelError)}
	switch name {
	case "allocation":
		return allocation.Open(ctx, cfg, allocation.Options{})
	case "orders":
		// Carts expire while the workload runs: the stock they free goes to
		// waiting lines, under the same disruptions.
		return orders.Open(ctx, cfg, orders.Options{ReservationTTL: 3 * time.Second})
	case "warehouse":
		return warehouse.Open(ctx, cfg)
	case "crm":
		return crm.Open(ctx, cfg)
	case "notifications":
		return notifications.Open(ctx, cfg, notifications.Mail{})
	}
	return nil, fmt.Errorf("no service %s", name)
}

// start opens and runs a service; sh.mu must be held for writing, or the
// shop not serving yet.
func (sh *inProcessShop) start(ctx context.Context, name string) error {
	svc, err := sh.open(ctx, name)
	if err != nil {
		return err
	}
	if err := svc.Recover(ctx, 0); err != nil {
		svc.Close()
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{svc: svc, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(runCtx) }()
	sh.svcs[name] = r
	mux := http.NewServeMux()
	for _, n := range names {
		if r := sh.svcs[n]; r != nil {
			r.svc.Routes(mux)
		}
	}
	sh.mux = mux
	return nil
}

func (sh *inProcessShop) stop(name string) {
	r := sh.svcs[name]
	r.stop()
	<-r.done
	r.svc.Close()
	delete(sh.svcs, name)
}

// restart stops a service, as SIGTERM does, and starts it again.
func (sh *inProcessShop) restart(ctx context.Context, name string) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.stop(name)
	return sh.start(ctx, name)
}

func (sh *inProcessShop) stopAll() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, n := range names {
		if sh.svcs[n] != nil {
			sh.stop(n)
		}
	}
}

// deadLetters lists every service's dead letters.
func (sh *inProcessShop) deadLetters(ctx context.Context) []string {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	var out []string
	for _, n := range names {
		list, err := sh.svcs[n].svc.DeadLetters(ctx, 100)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: listing dead letters: %v", n, err))
		}
		for _, d := range list {
			out = append(out, fmt.Sprintf("%s dead-lettered %s %s: %s", n, d.Channel, d.Payload, d.Reason))
		}
	}
	return out
}

func (sh *inProcessShop) serveHTTP(w http.ResponseWriter, r *http.Request) {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	sh.mux.ServeHTTP(w, r)
}
