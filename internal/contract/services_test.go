package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation"
	"github.com/stockflow/stockflow/internal/crm"
	"github.com/stockflow/stockflow/internal/flows"
	"github.com/stockflow/stockflow/internal/messaging"
	"github.com/stockflow/stockflow/internal/notifications"
	"github.com/stockflow/stockflow/internal/orders"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/testenv"
	"github.com/stockflow/stockflow/internal/transport/inproc"
	"github.com/stockflow/stockflow/internal/warehouse"
)

// published is a message a service published.
type published struct {
	service string
	channel string
	payload []byte
}

// recorder keeps what every service published, and which messages each
// consumer group was handed.
type recorder struct {
	mu        sync.Mutex
	published []published
	handed    map[string]bool // group + " " + message id
}

func newRecorder() *recorder { return &recorder{handed: map[string]bool{}} }

// publish records msgs as published by service.
func (r *recorder) publish(service string, msgs []messaging.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.published = append(r.published, published{service, m.Channel, bytes.Clone(m.Payload)})
	}
}

// hand records that group handled the message id.
func (r *recorder) hand(group, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handed[group+" "+id] = true
}

// wasHanded reports whether group handled the message id.
func (r *recorder) wasHanded(group, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handed[group+" "+id]
}

// snapshot returns what was published so far.
func (r *recorder) snapshot() []published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.published)
}

// missing returns the operations of ops no message was published for.
func (r *recorder) missing(ops []Operation) []Operation {
	seen := map[string]bool{}
	for _, p := range r.snapshot() {
		seen[p.service+" "+p.channel] = true
	}
	var out []Operation
	for _, op := range ops {
		if !seen[op.Party+" "+op.Channel] {
			out = append(out, op)
		}
	}
	return out
}

// recording is one service's side of the shared transport: it records
// what the service publishes, and which messages its group is handed.
type recording struct {
	messaging.Transport
	service string
	rec     *recorder
}

// Publish records msgs as the service's, and publishes them.
func (r *recording) Publish(ctx context.Context, msgs ...messaging.Envelope) error {
	r.rec.publish(r.service, msgs)
	return r.Transport.Publish(ctx, msgs...)
}

// Subscribe subscribes, noting each message handed to the group once it
// was handled.
func (r *recording) Subscribe(ctx context.Context, group string, channels []string, h messaging.Handler) error {
	return r.Transport.Subscribe(ctx, group, channels, func(ctx context.Context, d messaging.Delivery) error {
		err := h(ctx, d)
		r.rec.hand(group, d.ID)
		return err
	})
}

// shop is the five services running in the test's process on one
// in-process broker, behind one HTTP server.
type shop struct {
	t        *testing.T
	url      string
	shared   *inproc.Transport
	rec      *recorder
	services map[string]platform.Service
}

// opener opens a service as cmd/stockflow does.
type opener struct {
	name string
	open func(ctx context.Context, cfg platform.Config) (platform.Service, error)
}

var openers = []opener{
	{allocation.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		return allocation.Open(ctx, cfg, allocation.Options{})
	}},
	{orders.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		// Carts expire a second after their first item, so that the test
		// sees reservation_timeout and reservation_expired.
		return orders.Open(ctx, cfg, orders.Options{ReservationTTL: reservationTTL})
	}},
	{warehouse.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		return warehouse.Open(ctx, cfg)
	}},
	{crm.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		return crm.Open(ctx, cfg)
	}},
	{notifications.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		// No mail server: notifications are recorded, not sent.
		return notifications.Open(ctx, cfg, notifications.Mail{StockTeam: []string{"stock@example.com"}})
	}},
	{flows.Name, func(ctx context.Context, cfg platform.Config) (platform.Service, error) {
		return flows.Open(ctx, cfg, flows.Options{Channels: flowsMessages().Channels()})
	}},
}

// reservationTTL is how long the test's carts keep their reservations:
// a cart not placed within it expires. Every cart the test places is
// placed right after its items are added.
const reservationTTL = time.Second

// startShop opens and runs every service; they stop at the test's
// cleanup.
func startShop(t *testing.T) *shop {
	sh := &shop{t: t, shared: inproc.New(), rec: newRecorder(), services: map[string]platform.Service{}}
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	mux := http.NewServeMux()
	var running []platform.Service
	for _, o := range openers {
		cfg := platform.Config{DataDir: t.TempDir(), Transport: &recording{sh.shared, o.name, sh.rec}, Log: log.With("service", o.name)}
		svc, err := o.open(ctx, cfg)
		if err != nil {
			cancel()
			t.Fatalf("opening %s: %v", o.name, err)
		}
		t.Cleanup(svc.Close)
		if err := svc.Recover(ctx, 0); err != nil {
			cancel()
			t.Fatalf("%s: recover: %v", o.name, err)
		}
		svc.Routes(mux)
		running = append(running, svc)
		sh.services[o.name] = svc
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(running))
	for i, svc := range running {
		wg.Go(func() {
			if err := svc.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: run: %w", openers[i].name, err)
			}
		})
	}
	srv := httptest.NewServer(mux)
	sh.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		sh.shared.Close()
		if t.Failed() {
			t.Logf("the services' warnings and errors:\n%s", logs)
		}
	})
	return sh
}

// eventually waits, bounded, for cond to hold.
func (sh *shop) eventually(what string, cond func() bool) {
	sh.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			sh.t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// do sends a request with body as JSON, checks that the answer has the
// status want, and returns the answer's JSON body.
func (sh *shop) do(method, path string, body any, want int) map[string]any {
	sh.t.Helper()
	code, answer := sh.try(method, path, body)
	if code != want {
		sh.t.Fatalf("%s %s %v: status %d, want %d: %s", method, path, body, code, want, answer)
	}
	var out map[string]any
	if err := json.Unmarshal(answer, &out); err != nil {
		sh.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, answer)
	}
	return out
}

// try sends a request with body as JSON, and returns the answer's status
// and body.
func (sh *shop) try(method, path string, body any) (int, []byte) {
	sh.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			sh.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, sh.url+path, r)
	if err != nil {
		sh.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		sh.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	if err != nil {
		sh.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return res.StatusCode, answer
}

// poisonPayload is what poison publishes: not JSON.
const poisonPayload = `{"not json`

// poison publishes, straight on the shared broker, a message that is not
// JSON on a channel group consumes, until group was handed one (which
// tells that it subscribed): it dead-letters it.
func (sh *shop) poison(group, channel string) {
	sh.t.Helper()
	sh.eventually(group+" subscribing to "+channel, func() bool {
		env := messaging.Envelope{
			ID: messaging.NewID(), Channel: channel, Key: "poison",
			OccurredAt: time.Now().UTC(), Payload: json.RawMessage(poisonPayload),
		}
		if err := sh.shared.Publish(context.Background(), env); err != nil {
			sh.t.Fatalf("publishing poison on %s: %v", channel, err)
		}
		return sh.rec.wasHanded(group, env.ID)
	})
}

// timers returns the durable timers the warehouse keeps until they are
// due.
func (sh *shop) timers() messaging.Scheduler {
	sh.t.Helper()
	w, ok := sh.services[warehouse.Name].(*warehouse.Service)
	if !ok {
		sh.t.Fatalf("the warehouse is a %T", sh.services[warehouse.Name])
	}
	s, ok := w.Store.Messaging().(messaging.Scheduler)
	if !ok {
		sh.t.Fatalf("the warehouse's outbox (%T) keeps no timers", w.Store.Messaging())
	}
	return s
}

// sentOn counts the messages service published on channel.
func (sh *shop) sentOn(service, channel string) int {
	n := 0
	for _, p := range sh.rec.snapshot() {
		if p.service == service && p.channel == channel {
			n++
		}
	}
	return n
}

// status returns the status of the order id.
func (sh *shop) status(id string) string {
	sh.t.Helper()
	s, _ := sh.do("GET", "/orders/"+id, nil, http.StatusOK)["status"].(string)
	return s
}

// order creates an order of customer and returns its id.
func (sh *shop) order(customer string) string {
	sh.t.Helper()
	o := sh.do("POST", "/orders", map[string]any{"customer": customer, "email": customer + "@example.com"}, http.StatusCreated)
	id, _ := o["orderid"].(string)
	if id == "" {
		sh.t.Fatalf("POST /orders: no orderid in %v", o)
	}
	return id
}

// TestServicesKeepTheContract runs the shop until every service has sent
// every message the document says it sends, and checks each message sent
// against the document.
func TestServicesKeepTheContract(t *testing.T) {
	doc := loadDocument(t)
	var expected []Operation
	for _, op := range doc.Select("", Send) {
		if op.Party != Outside {
			expected = append(expected, op)
		}
	}
	sh := startShop(t)

	// A message each group cannot decode: every service dead-letters one,
	// and once each was handed its own, every group is subscribed.
	for _, s := range services {
		ch := s.inbound[0]
		if s.name == flows.Name {
			ch = messaging.ChannelReceipts // it journals any payload of the others
		}
		sh.poison(s.name, ch)
	}

	// Batches: in the warehouse (eta null) and on their way (a date: the
	// warehouse sets a timer for that day, batch_arrival_due; see below).
	for _, b := range []map[string]any{
		{"ref": "b-lamp", "sku": "LAMP", "qty": 100, "eta": nil},
		{"ref": "b-lamp-ship", "sku": "LAMP", "qty": 50, "eta": "2030-01-02"},
		{"ref": "b-chair", "sku": "CHAIR", "qty": 10},
		{"ref": "b-desk", "sku": "DESK", "qty": 10, "eta": nil},
	} {
		sh.do("POST", "/add_batch", b, http.StatusCreated)
	}

	// The warehouse's reports: change_batch_quantity, once it knows the
	// batches.
	for _, ref := range []string{"b-lamp", "b-chair"} {
		sh.eventually("the warehouse hearing of "+ref, func() bool {
			code, _ := sh.try("GET", "/warehouse/batches/"+ref, nil)
			return code == http.StatusOK
		})
	}
	sh.do("POST", "/warehouse/batches/b-lamp/damage", map[string]any{"qty": 2}, http.StatusAccepted)
	sh.do("POST", "/warehouse/batches/b-chair/count", map[string]any{"qty": 9, "note": "counted"}, http.StatusAccepted)

	// The book's API: allocate, deallocate, a batch shrinking under an
	// allocated line (deallocated, then out of stock), and a line no batch
	// can take.
	sh.do("POST", "/allocate", map[string]any{"orderid": "ext-1", "sku": "DESK", "qty": 3}, http.StatusCreated)
	sh.do("POST", "/deallocate", map[string]any{"orderid": "ext-1", "sku": "DESK", "qty": 3}, http.StatusOK)
	sh.do("POST", "/allocate", map[string]any{"orderid": "ext-2", "sku": "DESK", "qty": 5}, http.StatusCreated)
	sh.do("POST", "/change_batch_quantity", map[string]any{"batchref": "b-desk", "qty": 1}, http.StatusOK)
	sh.do("POST", "/allocate", map[string]any{"orderid": "ext-3", "sku": "DESK", "qty": 50}, http.StatusConflict)

	// A customer's three orders: reserved, placed, dispatched; the third
	// makes her a VIP (customer_became_vip, which the notifications and
	// allocation services receive).
	for range 3 {
		id := sh.order("vicky")
		sh.do("POST", "/orders/"+id+"/items", map[string]any{"sku": "LAMP", "qty": 1}, http.StatusAccepted)
		sh.do("POST", "/orders/"+id+"/place", nil, http.StatusOK)
	}

	// An order with an item out of stock, placed, then cancelled: its
	// line waiting for stock (out_of_stock, waiting) leaves the waiting
	// list (backorder_cancelled).
	id := sh.order("olga")
	sh.do("POST", "/orders/"+id+"/items", map[string]any{"sku": "NO-SUCH-SKU", "qty": 1}, http.StatusAccepted)
	sh.do("POST", "/orders/"+id+"/items", map[string]any{"sku": "CHAIR", "qty": 2}, http.StatusAccepted)
	sh.do("POST", "/orders/"+id+"/place", nil, http.StatusOK)
	sh.eventually("olga's line waiting for stock", func() bool { return sh.status(id) == "waiting_for_stock" })
	sh.do("POST", "/orders/"+id+"/cancel", nil, http.StatusOK)

	// An order waiting for a sku nobody stocks yet, served when a batch of
	// it comes: line_allocated with backorder, backorder_filled (and, the
	// order being placed, its dispatch).
	id = sh.order("wanda")
	sh.do("POST", "/orders/"+id+"/items", map[string]any{"sku": "SOFA", "qty": 2}, http.StatusAccepted)
	sh.do("POST", "/orders/"+id+"/place", nil, http.StatusOK)
	sh.eventually("wanda's line waiting for stock", func() bool { return sh.status(id) == "waiting_for_stock" })
	sh.do("POST", "/add_batch", map[string]any{"ref": "b-sofa", "sku": "SOFA", "qty": 5, "eta": nil}, http.StatusCreated)
	sh.eventually("wanda's order served by the new batch", func() bool { return sh.status(id) != "waiting_for_stock" })

	// A cart never placed: its clock (reservation_timeout, a durable timer
	// published after reservationTTL) runs out, and it expires
	// (reservation_expired).
	id = sh.order("rita")
	sh.do("POST", "/orders/"+id+"/items", map[string]any{"sku": "LAMP", "qty": 1}, http.StatusAccepted)
	sh.eventually("rita's cart expiring", func() bool { return sh.status(id) == "expired" })

	// batch_arrival_due is the warehouse's timer for b-lamp-ship, due on
	// its eta in 2030. The warehouse sets one only for an eta after today
	// (a batch due today is on the shelf: no timer), so no eta makes it
	// due while the test runs. The timer must be kept, not published,
	// until its day: the test checks that it waits in the warehouse's
	// scheduled timers and was not sent, then lets that day come for the
	// scheduler alone, promoting the timers due on it as the relay does
	// each round. The relay then publishes it through the broker like any
	// due timer, and the warehouse receives it: what is checked below is
	// the message the warehouse sends on the day, by the path it takes.
	ctx := context.Background()
	sh.eventually("the warehouse keeping the timer of b-lamp-ship", func() bool {
		n, err := sh.timers().Scheduled(ctx)
		if err != nil {
			t.Fatalf("counting the warehouse's timers: %v", err)
		}
		return n > 0
	})
	if n := sh.sentOn(warehouse.Name, "batch_arrival_due"); n != 0 {
		t.Errorf("the warehouse published %d batch_arrival_due before it was due", n)
	}
	arrives := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	if n, err := sh.timers().PromoteDue(ctx, arrives.Add(-time.Microsecond), 100); err != nil || n != 0 {
		t.Errorf("timers due before b-lamp-ship's eta: %d, %v; want none", n, err)
	}
	if n, err := sh.timers().PromoteDue(ctx, arrives, 100); err != nil || n == 0 {
		t.Errorf("timers due on b-lamp-ship's eta: %d, %v; want its timer", n, err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for len(sh.rec.missing(expected)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	// Every operation of a service was exercised: the document lists no
	// message a service does not send.
	for _, op := range sh.rec.missing(expected) {
		t.Errorf("%s never sent on %s while the shop ran, though the document says it does (operation %s)", op.Party, op.Channel, op.ID)
	}

	// Every message sent is the document's, and as it describes. The
	// first few messages that are not are shown for each (service,
	// channel), and the others counted.
	const shown = 3
	bad := map[string]int{}
	sent := sh.rec.snapshot()
	for _, p := range sent {
		kind := p.service + " " + p.channel
		op, ok := doc.Find(p.service, Send, p.channel)
		if !ok {
			if bad[kind]++; bad[kind] == 1 {
				t.Errorf("%s sent a message on channel %s, but the document has no send operation of %s on %s; payload: %s",
					p.service, p.channel, p.service, p.channel, p.payload)
			}
			continue
		}
		problems := doc.CheckPayload(op, p.payload)
		if len(problems) == 0 {
			continue
		}
		if bad[kind]++; bad[kind] <= shown {
			t.Errorf("%s sent on %s a message the document does not describe (operation %s):\n\t%s\n\tpayload: %s",
				p.service, p.channel, op.ID, strings.Join(problems, "\n\t"), p.payload)
		}
	}
	for _, kind := range sortedKeys(bad) {
		service, channel, _ := strings.Cut(kind, " ")
		if _, ok := doc.Find(service, Send, channel); ok && bad[kind] > shown {
			t.Errorf("%s: %d more messages the document does not describe", kind, bad[kind]-shown)
		}
	}
	// The only messages dead-lettered are the poison: a service that could
	// not take what another sent breaks the contract from the other side.
	for _, p := range sent {
		if p.channel != messaging.DeadLetterChannel {
			continue
		}
		var d messaging.DeadLetter
		if err := json.Unmarshal(p.payload, &d); err != nil {
			t.Errorf("%s sent a dead letter that is not one: %v: %s", p.service, err, p.payload)
			continue
		}
		if d.Payload != poisonPayload {
			t.Errorf("%s dead-lettered a message on %s that a service sent: %s\n\tpayload: %s", d.Consumer, d.Channel, d.Reason, d.Payload)
		}
	}
	t.Logf("checked %d messages on %d kinds of (service, channel)", len(sent), countKinds(sent))
}

// countKinds counts the (service, channel) pairs of sent.
func countKinds(sent []published) int {
	kinds := map[string]bool{}
	for _, p := range sent {
		kinds[p.service+" "+p.channel] = true
	}
	return len(kinds)
}

// TestCheckingFlagsWhatTheDocumentLacks checks the dynamic test's own
// checking: a payload with a field the document does not declare, of the
// wrong type, or on a channel the service does not send on, is found.
func TestCheckingFlagsWhatTheDocumentLacks(t *testing.T) {
	doc := loadDocument(t)
	op, ok := doc.Find(allocation.Name, Send, "line_allocated")
	if !ok {
		t.Fatal("the document has no allocation send operation on line_allocated")
	}
	good := `{"orderid": "o1", "sku": "LAMP", "qty": 1, "batchref": "b1"}`
	if got := doc.CheckPayload(op, []byte(good)); got != nil {
		t.Errorf("a good line_allocated: %q", got)
	}
	for payload, want := range map[string]string{
		`{"orderid": "o1", "sku": "LAMP", "qty": 1, "batchref": "b1", "note": "x"}`: "member /note is not declared",
		`{"orderid": "o1", "sku": "LAMP", "qty": 1.5, "batchref": "b1"}`:            "/qty: is number 1.5, want integer",
		`{"orderid": "o1", "sku": "LAMP", "qty": 1}`:                                "/batchref: required member is missing",
	} {
		got := doc.CheckPayload(op, []byte(payload))
		if len(got) != 1 || !strings.Contains(got[0], want) {
			t.Errorf("CheckPayload(%s) = %q, want a problem containing %q", payload, got, want)
		}
	}
	if _, ok := doc.Find(orders.Name, Send, "line_allocated"); ok {
		t.Error("the document says orders sends on line_allocated")
	}
}
