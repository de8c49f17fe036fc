package service_test

// The fakes of the handler tests, as in the book's tests/unit/test_handlers.py
// (FakeRepository, FakeUnitOfWork with its committed flag): an in-memory
// service.Store that loads products the way the real repository does, checks
// versions on commit, keeps an inbox and an outbox, and a read model.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

// errReadModelDown is what the fake read model fails with when told to.
var errReadModelDown = errors.New("fake read model: unavailable")

// fakeStore is an in-memory service.Store.
//
// A transaction loads copies of the stored products; on commit it checks
// each changed product's version against the stored one, and stores a deep
// copy of the product's in-memory state at the next version (it never looks
// at the events to do so). Events of every product the transaction saw go to
// the outbox, in envelopes made by the registry. Read model writes are kept
// in the transaction and applied on commit.
type fakeStore struct {
	reg *messaging.Registry

	mu        sync.Mutex
	products  map[string]*storedProduct // by sku
	skuOf     map[string]string         // batch ref -> sku
	vips      map[string]bool           // customers
	inbox     map[inboxKey]bool
	outbox    []messaging.Raised
	view      []viewRow // the allocations view, one row per (orderid, sku)
	committed int       // commits that succeeded
	attempts  int       // calls of Transact
	// conflicts is how many commits are still to fail with
	// messaging.ErrConcurrentUpdate, as if another writer won the race.
	conflicts int
	// failSetAllocation is how many SetAllocation calls are still to fail.
	failSetAllocation int
	setAllocations    int // calls of SetAllocation
	// beforeCommit, when set, runs once (then is cleared), after fn and
	// before the commit, without the store's lock: a concurrent writer.
	beforeCommit func()
	// onRetry, when set, is called each time the unit of work runs a
	// transaction again.
	onRetry func()

	uow *messaging.UnitOfWork[*fakeUoW]
}

type storedProduct struct {
	version int
	// batches holds every batch of the product with all its lines, in
	// allocation order, without their VIP marks (vips keeps them).
	batches map[string]*domain.Batch
	waiting []domain.Backorder
}

type inboxKey struct{ consumer, messageID string }

type viewRow struct{ orderID, sku, batchRef string }

func newFakeStore() *fakeStore {
	s := &fakeStore{
		reg:      service.Messages(),
		products: map[string]*storedProduct{},
		skuOf:    map[string]string{},
		inbox:    map[inboxKey]bool{},
		vips:     map[string]bool{},
	}
	s.uow = messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*fakeUoW]{
		Begin: s.begin,
		Retried: func() {
			s.mu.Lock()
			f := s.onRetry
			s.mu.Unlock()
			if f != nil {
				f()
			}
		},
	})
	return s
}

var _ service.Store = (*fakeStore)(nil)

// Transact implements service.Store, through the unit of work every store
// runs (messaging.UnitOfWork), with a fakeUoW as its transaction.
func (s *fakeStore) Transact(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	return s.uow.Transact(ctx, func(ctx context.Context, u *fakeUoW) error { return fn(ctx, u) })
}

// transactOnce runs fn in one transaction, not again when it lost a race:
// the tests of the store's own checks see its first answer.
func (s *fakeStore) transactOnce(ctx context.Context, fn func(context.Context, service.UnitOfWork) error) ([]messaging.Raised, error) {
	once := messaging.NewUnitOfWork(messaging.UnitOfWorkConfig[*fakeUoW]{Begin: s.begin, MaxAttempts: 1})
	return once.Transact(ctx, func(ctx context.Context, u *fakeUoW) error { return fn(ctx, u) })
}

// begin starts a transaction.
func (s *fakeStore) begin(ctx context.Context) (*fakeUoW, error) {
	s.mu.Lock()
	s.attempts++
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &fakeUoW{s: s}, nil
}

// Claim implements messaging.Tx; the entry is kept at commit.
func (u *fakeUoW) Claim(_ context.Context, consumer, id string) (bool, error) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	u.claimed = &inboxKey{consumer, id}
	return !u.s.inbox[*u.claimed], nil
}

// Flush implements messaging.Tx: the products' events, in envelopes; the
// products themselves are checked and stored at commit.
func (u *fakeUoW) Flush(ctx context.Context) ([]messaging.Raised, error) {
	var raised []messaging.Raised
	for _, l := range u.seen {
		for _, ev := range l.p.Events() {
			env, err := u.s.reg.Envelope(ctx, ev)
			if err != nil {
				return nil, err
			}
			raised = append(raised, messaging.Raised{Envelope: env, Event: ev})
		}
	}
	u.raised = raised
	return raised, nil
}

// AppendOutbox implements messaging.Tx: the messages Flush returned go to
// the outbox at commit.
func (u *fakeUoW) AppendOutbox(_ context.Context, msgs []messaging.Envelope) error {
	if len(msgs) != len(u.raised) {
		return fmt.Errorf("outbox: %d messages, %d raised", len(msgs), len(u.raised))
	}
	u.appended = true
	return nil
}

// Rollback implements messaging.Tx: nothing was stored.
func (u *fakeUoW) Rollback(context.Context) error { return nil }

// Commit implements messaging.Tx: it runs the beforeCommit hook, then
// checks and applies the unit of work, all or nothing.
func (u *fakeUoW) Commit(ctx context.Context) error {
	s := u.s
	s.mu.Lock()
	hook := s.beforeCommit
	s.beforeCommit = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conflicts > 0 {
		s.conflicts--
		return fmt.Errorf("%w: injected conflict", messaging.ErrConcurrentUpdate)
	}
	if u.claimed != nil && s.inbox[*u.claimed] {
		return messaging.ErrAlreadyHandled
	}

	// Stage the products, so that a failure leaves the store as it was.
	staged := map[string]*storedProduct{}
	stagedSKUOf := map[string]string{}
	current := func(sku string) *storedProduct {
		if sp, ok := staged[sku]; ok {
			return sp
		}
		return s.products[sku]
	}
	for _, l := range u.seen {
		p := l.p
		if !p.Changed() {
			continue
		}
		cur := current(p.SKU)
		switch {
		case p.Version == 0 && cur != nil:
			return fmt.Errorf("%w: product %s was created meanwhile", messaging.ErrConcurrentUpdate, p.SKU)
		case p.Version != 0 && (cur == nil || cur.version != p.Version):
			return fmt.Errorf("%w: product %s at version %d", messaging.ErrConcurrentUpdate, p.SKU, p.Version)
		}
		for _, b := range p.Batches {
			owner, ok := stagedSKUOf[b.Ref]
			if !ok {
				owner = s.skuOf[b.Ref]
			}
			if owner != "" && owner != p.SKU {
				return fmt.Errorf("%w %s", domain.ErrDuplicateBatch, b.Ref)
			}
			stagedSKUOf[b.Ref] = p.SKU
		}
		next, err := applyProduct(cur, l)
		if err != nil {
			return err
		}
		staged[p.SKU] = next
	}

	view := slices.Clone(s.view)
	for _, op := range u.viewOps {
		view = op(view, s.allocatedTo)
	}

	// Commit.
	for _, c := range u.vips {
		s.vips[c] = true
	}
	for sku, sp := range staged {
		s.products[sku] = sp
	}
	for ref, sku := range stagedSKUOf {
		s.skuOf[ref] = sku
	}
	s.view = view
	if u.appended {
		s.outbox = append(s.outbox, u.raised...)
	}
	if u.claimed != nil {
		s.inbox[*u.claimed] = true
	}
	s.committed++
	return nil
}

// applyProduct returns the stored product that results from saving the
// product l loaded (or added) over cur: the lines the transaction removed
// from a batch are removed from all the batch's stored lines, those it
// appended are appended.
func applyProduct(cur *storedProduct, l *loadedProduct) (*storedProduct, error) {
	p := l.p
	next := &storedProduct{version: p.Version + 1, batches: map[string]*domain.Batch{}}
	for _, w := range p.Waiting {
		w.VIP = false
		next.waiting = append(next.waiting, w)
	}
	for _, b := range p.Batches {
		var all []domain.OrderLine
		if cur != nil {
			if old := cur.batches[b.Ref]; old != nil {
				all = slices.Clone(old.Lines)
			}
		}
		loaded := l.lines[b.Ref]
		for _, gone := range minus(loaded, b.Lines) {
			i := slices.IndexFunc(all, func(l domain.OrderLine) bool { l.VIP = gone.VIP; return l == gone })
			if i < 0 {
				return nil, fmt.Errorf("fake store: batch %s: removed line %+v was never stored", b.Ref, gone)
			}
			all = slices.Delete(all, i, i+1)
		}
		all = append(all, minus(b.Lines, loaded)...)
		sum := 0
		for _, line := range all {
			sum += line.Qty
		}
		if sum != b.Allocated {
			return nil, fmt.Errorf("fake store: batch %s: allocated %d, but its lines add up to %d", b.Ref, b.Allocated, sum)
		}
		if len(all) == 0 {
			all = nil
		}
		nb := *b
		nb.Lines = all
		for i := range nb.Lines {
			nb.Lines[i].VIP = false
		}
		next.batches[b.Ref] = &nb
	}
	if cur != nil {
		for ref := range cur.batches {
			if _, ok := next.batches[ref]; !ok {
				return nil, fmt.Errorf("fake store: product %s lost batch %s", p.SKU, ref)
			}
		}
	}
	return next, nil
}

// minus returns the lines of a that are not in b, as multisets, in a's
// order, whatever their VIP marks.
func minus(a, b []domain.OrderLine) []domain.OrderLine {
	rest := slices.Clone(b)
	var out []domain.OrderLine
	for _, l := range a {
		if i := slices.IndexFunc(rest, func(r domain.OrderLine) bool { r.VIP = l.VIP; return r == l }); i >= 0 {
			rest = slices.Delete(rest, i, i+1)
			continue
		}
		out = append(out, l)
	}
	return out
}

// Allocations implements service.Store.
func (s *fakeStore) Allocations(ctx context.Context, orderID string) ([]service.AllocationView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []service.AllocationView
	for _, r := range s.view {
		if r.orderID == orderID {
			out = append(out, service.AllocationView{SKU: r.sku, BatchRef: r.batchRef})
		}
	}
	slices.SortFunc(out, func(a, b service.AllocationView) int { return cmp.Compare(a.SKU, b.SKU) })
	return out, nil
}

// load returns a copy of the stored product of sku, with the lines keep
// keeps, as the real repository loads it.
func (s *fakeStore) load(sku string, keep func(ref string, l domain.OrderLine) bool) (*domain.Product, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.products[sku]
	if sp == nil {
		return nil, fmt.Errorf("product %s: %w", sku, fail.NotFound)
	}
	batches := make([]*domain.Batch, 0, len(sp.batches))
	for _, b := range sp.batches {
		nb := *b
		nb.Lines = nil
		for _, l := range b.Lines {
			if keep(b.Ref, l) {
				l.VIP = s.vips[l.Customer]
				nb.Lines = append(nb.Lines, l)
			}
		}
		batches = append(batches, &nb)
	}
	p := domain.NewProduct(sku, sp.version, batches...)
	for _, w := range sp.waiting {
		w.VIP = s.vips[w.Customer]
		p.Waiting = append(p.Waiting, w)
	}
	domain.Rank(p.Waiting)
	return p, nil
}

// The unit of work.

type fakeUoW struct {
	s        *fakeStore
	claimed  *inboxKey          // the message handled, if any
	raised   []messaging.Raised // by Flush
	appended bool               // to the outbox
	seen     []*loadedProduct
	viewOps  []func(rows []viewRow, allocatedTo func(orderID, sku string) string) []viewRow
	vips     []string // customers to record as VIPs
}

// loadedProduct is a product a unit of work loaded or added, with the lines
// of each batch it was handed.
type loadedProduct struct {
	p     *domain.Product
	lines map[string][]domain.OrderLine
}

func (u *fakeUoW) Products() service.ProductRepository   { return (*fakeRepo)(u) }
func (u *fakeUoW) ReadModel() service.ReadModel          { return (*fakeReadModel)(u) }
func (u *fakeUoW) Customers() service.CustomerRepository { return (*fakeCustomers)(u) }

type fakeCustomers fakeUoW

func (c *fakeCustomers) IsVIP(_ context.Context, customer string) (bool, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.vips[customer] || slices.Contains(c.vips, customer), nil
}

func (c *fakeCustomers) AddVIP(_ context.Context, customer string) ([]string, error) {
	c.vips = append(c.vips, customer)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	var skus []string
	for sku, sp := range c.s.products {
		if slices.ContainsFunc(sp.waiting, func(w domain.Backorder) bool { return w.Customer == customer }) {
			skus = append(skus, sku)
		}
	}
	slices.Sort(skus)
	return skus, nil
}

func (u *fakeUoW) see(p *domain.Product) {
	l := &loadedProduct{p: p, lines: map[string][]domain.OrderLine{}}
	for _, b := range p.Batches {
		l.lines[b.Ref] = slices.Clone(b.Lines)
	}
	u.seen = append(u.seen, l)
}

type fakeRepo fakeUoW

func (r *fakeRepo) Add(p *domain.Product) { (*fakeUoW)(r).see(p) }

func (r *fakeRepo) Get(ctx context.Context, sku string) (*domain.Product, error) {
	return r.load(sku, func(string, domain.OrderLine) bool { return false })
}

func (r *fakeRepo) GetForOrder(ctx context.Context, sku, orderID string) (*domain.Product, error) {
	return r.load(sku, func(_ string, l domain.OrderLine) bool { return l.OrderID == orderID })
}

func (r *fakeRepo) GetByBatchRef(ctx context.Context, ref, orderID string) (*domain.Product, error) {
	r.s.mu.Lock()
	sku, ok := r.s.skuOf[ref]
	r.s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("batch %s: %w", ref, fail.NotFound)
	}
	return r.load(sku, func(bref string, l domain.OrderLine) bool {
		return bref == ref || orderID != "" && l.OrderID == orderID
	})
}

func (r *fakeRepo) load(sku string, keep func(string, domain.OrderLine) bool) (*domain.Product, error) {
	p, err := r.s.load(sku, keep)
	if err != nil {
		return nil, err
	}
	(*fakeUoW)(r).see(p)
	return p, nil
}

type fakeReadModel fakeUoW

func (m *fakeReadModel) SetAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	m.s.mu.Lock()
	m.s.setAllocations++
	fail := m.s.failSetAllocation > 0
	if fail {
		m.s.failSetAllocation--
	}
	m.s.mu.Unlock()
	if fail {
		return errReadModelDown
	}
	m.viewOps = append(m.viewOps, func(rows []viewRow, allocatedTo func(string, string) string) []viewRow {
		if allocatedTo(orderID, sku) != batchRef {
			return rows // no longer true: the line moved on
		}
		for i, r := range rows {
			if r.orderID == orderID && r.sku == sku {
				rows[i].batchRef = batchRef
				return rows
			}
		}
		return append(rows, viewRow{orderID, sku, batchRef})
	})
	return nil
}

func (m *fakeReadModel) RemoveAllocation(ctx context.Context, orderID, sku, batchRef string) error {
	m.viewOps = append(m.viewOps, func(rows []viewRow, allocatedTo func(string, string) string) []viewRow {
		if allocatedTo(orderID, sku) == batchRef {
			return rows // allocated there again: the removal is late
		}
		return slices.DeleteFunc(rows, func(r viewRow) bool {
			return r.orderID == orderID && r.sku == sku && r.batchRef == batchRef
		})
	})
	return nil
}

// What the tests look at.

func (s *fakeStore) committedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

func (s *fakeStore) attemptsCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

func (s *fakeStore) injectConflicts(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conflicts = n
}

func (s *fakeStore) failSetAllocations(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSetAllocation = n
}

func (s *fakeStore) setAllocationCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setAllocations
}

func (s *fakeStore) setBeforeCommit(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforeCommit = f
}

// raised returns everything the outbox holds, oldest first.
func (s *fakeStore) raised() []messaging.Raised {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// events returns the events in the outbox, oldest first.
func (s *fakeStore) events() []domain.Event {
	var out []domain.Event
	for _, r := range s.raised() {
		out = append(out, r.Event.(domain.Event))
	}
	return out
}

// eventsSince returns the events the outbox got after its first n.
func (s *fakeStore) eventsSince(n int) []domain.Event {
	evs := s.events()
	if len(evs) <= n {
		return nil
	}
	return evs[n:]
}

func (s *fakeStore) outboxLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outbox)
}

// version returns the stored version of the product of sku, 0 when none.
func (s *fakeStore) version(sku string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sp := s.products[sku]; sp != nil {
		return sp.version
	}
	return 0
}

// batch returns a copy of the stored batch with ref (with all its lines),
// or nil.
func (s *fakeStore) batch(ref string) *domain.Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.products[s.skuOf[ref]]
	if sp == nil || sp.batches[ref] == nil {
		return nil
	}
	b := *sp.batches[ref]
	b.Lines = slices.Clone(b.Lines)
	return &b
}

func (s *fakeStore) viewRows() []viewRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.view)
}

func (s *fakeStore) inboxHas(consumer, messageID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inbox[inboxKey{consumer, messageID}]
}

// fakeDispatchLog records the ids the bus marks dispatched.
type fakeDispatchLog struct {
	mu  sync.Mutex
	ids []string
}

func (d *fakeDispatchLog) MarkDispatched(ctx context.Context, ids []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids = append(d.ids, ids...)
	return nil
}

func (d *fakeDispatchLog) marked() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ids)
}

// recordingHandler is a slog.Handler that keeps the records.
type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// errorRecords returns the attributes of the records logged at error level.
func (h *recordingHandler) errorRecords() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r.Level < slog.LevelError {
			continue
		}
		attrs := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// The fixture: a fake store, its handlers and the bus over them.

type fixture struct {
	store    *fakeStore
	handlers *service.Handlers
	bus      *messaging.Bus
	dispatch *fakeDispatchLog
	logs     *recordingHandler
	retries  *int
	retryMu  *sync.Mutex
}

// newFixture wires the handlers over a fake store to a bus that logs
// nowhere and keeps no dispatch log.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// newObservedFixture is newFixture with a bus whose logs and dispatch log
// the test can read.
func newObservedFixture(t *testing.T) *fixture {
	t.Helper()
	logs, dispatch := &recordingHandler{}, &fakeDispatchLog{}
	f := newFixtureWith(t, slog.New(logs), dispatch)
	f.logs, f.dispatch = logs, dispatch
	return f
}

func newFixtureWith(t *testing.T, log *slog.Logger, dispatch messaging.DispatchLog) *fixture {
	t.Helper()
	f := &fixture{store: newFakeStore(), retries: new(int), retryMu: &sync.Mutex{}}
	f.handlers = service.NewHandlers(f.store)
	f.store.onRetry = func() {
		f.retryMu.Lock()
		*f.retries++
		f.retryMu.Unlock()
	}
	f.bus = service.NewBus(f.handlers, log, dispatch)
	return f
}

func (f *fixture) retryCount() int {
	f.retryMu.Lock()
	defer f.retryMu.Unlock()
	return *f.retries
}

func (f *fixture) handle(t *testing.T, cmd any) any {
	t.Helper()
	res, err := f.bus.Handle(t.Context(), cmd)
	if err != nil {
		t.Fatalf("Handle(%#v): %v", cmd, err)
	}
	return res
}

func (f *fixture) createBatch(t *testing.T, ref, sku string, qty int, eta time.Time) {
	t.Helper()
	f.handle(t, domain.CreateBatch{Ref: ref, SKU: sku, Qty: qty, ETA: eta})
}

func (f *fixture) allocate(t *testing.T, orderID, sku string, qty int) string {
	t.Helper()
	ref, _ := f.handle(t, domain.Allocate{OrderID: orderID, SKU: sku, Qty: qty}).(string)
	return ref
}

var (
	today    = time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC)
	tomorrow = today.AddDate(0, 0, 1)
	later    = today.AddDate(0, 0, 10)
	noETA    time.Time
)

func line(orderID, sku string, qty int) domain.OrderLine {
	return domain.OrderLine{OrderID: orderID, SKU: sku, Qty: qty}
}

// allocatedTo returns the batch the line of orderID and sku is allocated
// to, or "". The caller holds s.mu.
func (s *fakeStore) allocatedTo(orderID, sku string) string {
	sp := s.products[sku]
	if sp == nil {
		return ""
	}
	for ref, b := range sp.batches {
		for _, l := range b.Lines {
			if l.OrderID == orderID {
				return ref
			}
		}
	}
	return ""
}
