package service_test

// Tests of the fake store itself: it must behave like the real repository
// and unit of work for the handler tests to mean anything.

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockflow/stockflow/internal/allocation/domain"
	"github.com/stockflow/stockflow/internal/allocation/service"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/messaging"
)

func mustTransact(t *testing.T, s *fakeStore, ctx context.Context, fn func(context.Context, service.UnitOfWork) error) []messaging.Raised {
	t.Helper()
	raised, err := s.Transact(ctx, fn)
	if err != nil {
		t.Fatalf("Transact: %v", err)
	}
	return raised
}

// seed stores product S with b1 (warehouse, 10) holding o1 (2) and o2 (3),
// b2 (tomorrow, 10) holding o3 (4), and product T with t1 holding o1 (1).
func seed(t *testing.T) *fakeStore {
	t.Helper()
	s := newFakeStore()
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("S", 0)
		uow.Products().Add(p)
		q := domain.NewProduct("T", 0)
		uow.Products().Add(q)
		return errors.Join(
			p.AddBatch("b1", 10, noETA),
			q.AddBatch("t1", 10, noETA),
		)
	})
	allocate := func(orderID, sku string, qty int, want string) {
		t.Helper()
		mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().GetForOrder(ctx, sku, orderID)
			if err != nil {
				return err
			}
			ref, err := p.Allocate(line(orderID, sku, qty))
			if err == nil && ref != want {
				t.Errorf("%s went to %s, want %s", orderID, ref, want)
			}
			return err
		})
	}
	allocate("o1", "S", 2, "b1")
	allocate("o2", "S", 3, "b1")
	allocate("o1", "T", 1, "t1")
	// b2 arrives later than b1, so o3 goes there only once b1 is full.
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().Get(ctx, "S")
		if err != nil {
			return err
		}
		return p.AddBatch("b2", 10, tomorrow)
	})
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, "b1", "")
		if err != nil {
			return err
		}
		return p.ChangeBatchQuantity("b1", 5)
	})
	allocate("o3", "S", 4, "b2")
	return s
}

type loadedBatch struct {
	Ref       string
	Allocated int
	Lines     []domain.OrderLine
}

func loadedBatches(p *domain.Product) []loadedBatch {
	var out []loadedBatch
	for _, b := range p.Batches {
		out = append(out, loadedBatch{b.Ref, b.Allocated, b.Lines})
	}
	return out
}

func TestFakeStoreLoadsLikeTheRepository(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		load func(context.Context, service.ProductRepository) (*domain.Product, error)
		want []loadedBatch
	}{
		{
			name: "Get: allocated totals, no lines",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.Get(ctx, "S")
			},
			want: []loadedBatch{{"b1", 5, nil}, {"b2", 4, nil}},
		},
		{
			name: "GetForOrder: the order's lines only",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetForOrder(ctx, "S", "o2")
			},
			want: []loadedBatch{{"b1", 5, []domain.OrderLine{line("o2", "S", 3)}}, {"b2", 4, nil}},
		},
		{
			name: "GetForOrder: not the order's lines of other skus",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetForOrder(ctx, "T", "o3")
			},
			want: []loadedBatch{{"t1", 1, nil}},
		},
		{
			name: "GetByBatchRef: every line of the batch, in allocation order",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetByBatchRef(ctx, "b1", "")
			},
			want: []loadedBatch{{"b1", 5, []domain.OrderLine{line("o1", "S", 2), line("o2", "S", 3)}}, {"b2", 4, nil}},
		},
		{
			name: "GetByBatchRef: no lines of the other batches",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetByBatchRef(ctx, "b2", "")
			},
			want: []loadedBatch{{"b1", 5, nil}, {"b2", 4, []domain.OrderLine{line("o3", "S", 4)}}},
		},
		{
			name: "GetByBatchRef with an order: the batch's lines, and the order's in another batch",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetByBatchRef(ctx, "b2", "o1")
			},
			want: []loadedBatch{{"b1", 5, []domain.OrderLine{line("o1", "S", 2)}}, {"b2", 4, []domain.OrderLine{line("o3", "S", 4)}}},
		},
		{
			name: "GetByBatchRef with an order whose line is in the batch",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetByBatchRef(ctx, "b1", "o2")
			},
			want: []loadedBatch{{"b1", 5, []domain.OrderLine{line("o1", "S", 2), line("o2", "S", 3)}}, {"b2", 4, nil}},
		},
		{
			name: "GetByBatchRef with an order: not its lines of other skus",
			load: func(ctx context.Context, r service.ProductRepository) (*domain.Product, error) {
				return r.GetByBatchRef(ctx, "t1", "o1")
			},
			want: []loadedBatch{{"t1", 1, []domain.OrderLine{line("o1", "T", 1)}}},
		},
	}
	s := seed(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
				p, err := tt.load(ctx, uow.Products())
				if err != nil {
					return err
				}
				if diff := cmp.Diff(tt.want, loadedBatches(p)); diff != "" {
					t.Errorf("loaded batches (-want +got):\n%s", diff)
				}
				return nil
			})
		})
	}
}

func TestFakeStoreNotFound(t *testing.T) {
	t.Parallel()
	s := seed(t)
	_, err := s.Transact(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		r := uow.Products()
		_, err1 := r.Get(ctx, "NOPE")
		_, err2 := r.GetForOrder(ctx, "NOPE", "o1")
		_, err3 := r.GetByBatchRef(ctx, "nope", "")
		for i, err := range []error{err1, err2, err3} {
			if !errors.Is(err, fail.NotFound) {
				t.Errorf("load %d: err = %v, want fail.NotFound", i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFakeStoreSavesWhatChangedInMemory(t *testing.T) {
	t.Parallel()
	s := seed(t)
	// Shrink b1 to 2 (o2 goes to b2, in the change), deallocate o3,
	// allocate o4 in b2.
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, "b1", "")
		if err != nil {
			return err
		}
		return p.ChangeBatchQuantity("b1", 2)
	})
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "S", "o3")
		if err != nil {
			return err
		}
		_, err = p.Deallocate(line("o3", "S", 4))
		return err
	})
	mustTransact(t, s, t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "S", "o4")
		if err != nil {
			return err
		}
		_, err = p.Allocate(line("o4", "S", 6))
		return err
	})
	want := map[string]*domain.Batch{
		"b1": {Ref: "b1", SKU: "S", Purchased: 2, Allocated: 2, Lines: []domain.OrderLine{line("o1", "S", 2)}},
		"b2": {Ref: "b2", SKU: "S", Purchased: 10, ETA: tomorrow, Allocated: 9, Lines: []domain.OrderLine{line("o2", "S", 3), line("o4", "S", 6)}},
		"t1": {Ref: "t1", SKU: "T", Purchased: 10, Allocated: 1, Lines: []domain.OrderLine{line("o1", "T", 1)}},
	}
	for ref, w := range want {
		if diff := cmp.Diff(w, s.batch(ref)); diff != "" {
			t.Errorf("stored batch %s (-want +got):\n%s", ref, diff)
		}
	}
}

func TestFakeStoreLoadsCopies(t *testing.T) {
	t.Parallel()
	s := seed(t)
	before := s.batch("b1")
	_, err := s.Transact(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetByBatchRef(ctx, "b1", "")
		if err != nil {
			return err
		}
		p.Batch("b1").Lines[0].Qty = 99
		p.Batch("b1").Purchased = 99
		return errors.New("roll back")
	})
	if err == nil {
		t.Fatal("Transact: want the error of fn")
	}
	if diff := cmp.Diff(before, s.batch("b1")); diff != "" {
		t.Errorf("stored batch changed through a loaded copy (-before +after):\n%s", diff)
	}
}

func TestFakeStoreRollsBackOnError(t *testing.T) {
	t.Parallel()
	s := seed(t)
	committed, outbox, version := s.committedCount(), s.outboxLen(), s.version("S")
	boom := errors.New("boom")
	_, err := s.Transact(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
		p, err := uow.Products().GetForOrder(ctx, "S", "o9")
		if err != nil {
			return err
		}
		if _, err := p.Allocate(line("o9", "S", 1)); err != nil {
			return err
		}
		if err := uow.ReadModel().SetAllocation(ctx, "o9", "S", "b1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Transact: err = %v, want %v", err, boom)
	}
	if got := s.committedCount(); got != committed {
		t.Errorf("committed = %d, want %d", got, committed)
	}
	if got := s.outboxLen(); got != outbox {
		t.Errorf("outbox has %d messages, want %d", got, outbox)
	}
	if got := s.version("S"); got != version {
		t.Errorf("version = %d, want %d", got, version)
	}
	if rows := s.viewRows(); len(rows) != 0 {
		t.Errorf("read model rows = %v, want none", rows)
	}
}

func TestFakeStoreVersionCheck(t *testing.T) {
	t.Parallel()
	t.Run("another transaction changed the product", func(t *testing.T) {
		s := seed(t)
		v := s.version("S")
		_, err := s.transactOnce(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().GetForOrder(ctx, "S", "o8")
			if err != nil {
				return err
			}
			// Meanwhile, another transaction wins.
			mustTransact(t, s, ctx, func(ctx context.Context, uow service.UnitOfWork) error {
				q, err := uow.Products().GetForOrder(ctx, "S", "o9")
				if err != nil {
					return err
				}
				_, err = q.Allocate(line("o9", "S", 1))
				return err
			})
			_, err = p.Allocate(line("o8", "S", 1))
			return err
		})
		if !errors.Is(err, messaging.ErrConcurrentUpdate) {
			t.Fatalf("Transact: err = %v, want ErrConcurrentUpdate", err)
		}
		if got := s.version("S"); got != v+1 {
			t.Errorf("version = %d, want %d (the winner's)", got, v+1)
		}
		if b := s.batch("b2"); b.Allocated != 5 || len(b.Lines) != 2 {
			t.Errorf("b2 = %+v, want o3 and the winner's o9 only", b)
		}
	})
	t.Run("an unchanged product is not checked", func(t *testing.T) {
		s := seed(t)
		_, err := s.transactOnce(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
			if _, err := uow.Products().Get(ctx, "S"); err != nil {
				return err
			}
			mustTransact(t, s, ctx, func(ctx context.Context, uow service.UnitOfWork) error {
				q, err := uow.Products().Get(ctx, "S")
				if err != nil {
					return err
				}
				return q.AddBatch("b9", 1, later)
			})
			return nil
		})
		if err != nil {
			t.Fatalf("Transact: %v", err)
		}
	})
	t.Run("a product added twice", func(t *testing.T) {
		s := newFakeStore()
		_, err := s.transactOnce(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
			mustTransact(t, s, ctx, func(ctx context.Context, uow service.UnitOfWork) error {
				q := domain.NewProduct("N", 0)
				uow.Products().Add(q)
				return q.AddBatch("n1", 1, noETA)
			})
			p := domain.NewProduct("N", 0)
			uow.Products().Add(p)
			return p.AddBatch("n2", 1, noETA)
		})
		if !errors.Is(err, messaging.ErrConcurrentUpdate) {
			t.Fatalf("Transact: err = %v, want ErrConcurrentUpdate", err)
		}
	})
	t.Run("a batch ref of another sku", func(t *testing.T) {
		s := seed(t)
		_, err := s.transactOnce(t.Context(), func(ctx context.Context, uow service.UnitOfWork) error {
			p, err := uow.Products().Get(ctx, "T")
			if err != nil {
				return err
			}
			return p.AddBatch("b1", 1, noETA)
		})
		if !errors.Is(err, domain.ErrDuplicateBatch) {
			t.Fatalf("Transact: err = %v, want ErrDuplicateBatch", err)
		}
	})
	t.Run("injected conflicts", func(t *testing.T) {
		s := seed(t)
		s.injectConflicts(2)
		noop := func(context.Context, service.UnitOfWork) error { return nil }
		for i, want := range []error{messaging.ErrConcurrentUpdate, messaging.ErrConcurrentUpdate, nil} {
			if _, err := s.transactOnce(t.Context(), noop); !errors.Is(err, want) {
				t.Errorf("commit %d: err = %v, want %v", i+1, err, want)
			}
		}
	})
}

func TestFakeStoreInbox(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	tests := []struct {
		name      string
		first     messaging.Meta
		second    messaging.Meta
		wantCalls int
		wantErr   error // of the second Transact
	}{
		{"same consumer and message", messaging.Meta{Consumer: "c", MessageID: "m"}, messaging.Meta{Consumer: "c", MessageID: "m"}, 1, messaging.ErrAlreadyHandled},
		{"same message, other consumer", messaging.Meta{Consumer: "c", MessageID: "m"}, messaging.Meta{Consumer: "d", MessageID: "m"}, 2, nil},
		{"same consumer, other message", messaging.Meta{Consumer: "c", MessageID: "m"}, messaging.Meta{Consumer: "c", MessageID: "n"}, 2, nil},
		{"no consumer", messaging.Meta{MessageID: "m"}, messaging.Meta{MessageID: "m"}, 2, nil},
		{"no message", messaging.Meta{Consumer: "c"}, messaging.Meta{Consumer: "c"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeStore()
			calls := 0
			fn := func(context.Context, service.UnitOfWork) error { calls++; return nil }
			if _, err := s.Transact(messaging.WithMeta(ctx, tt.first), fn); err != nil {
				t.Fatalf("first Transact: %v", err)
			}
			_, err := s.Transact(messaging.WithMeta(ctx, tt.second), fn)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("second Transact: err = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("fn called %d times, want %d", calls, tt.wantCalls)
			}
			if got := s.committedCount(); got != tt.wantCalls {
				t.Errorf("committed = %d, want %d", got, tt.wantCalls)
			}
		})
	}

	t.Run("a failed transaction records nothing", func(t *testing.T) {
		s := newFakeStore()
		mctx := messaging.WithMeta(ctx, messaging.Meta{Consumer: "c", MessageID: "m"})
		_, err := s.Transact(mctx, func(context.Context, service.UnitOfWork) error { return errors.New("boom") })
		if err == nil {
			t.Fatal("want the error of fn")
		}
		if s.inboxHas("c", "m") {
			t.Fatal("inbox recorded a message whose transaction failed")
		}
		if _, err := s.Transact(mctx, func(context.Context, service.UnitOfWork) error { return nil }); err != nil {
			t.Fatalf("second Transact: %v", err)
		}
		if !s.inboxHas("c", "m") {
			t.Fatal("inbox did not record the message")
		}
	})
}

func TestFakeStoreEnvelopes(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	ctx := messaging.WithMeta(t.Context(), messaging.Meta{MessageID: "cmd-1", CorrelationID: "corr-1"})
	raised := mustTransact(t, s, ctx, func(ctx context.Context, uow service.UnitOfWork) error {
		p := domain.NewProduct("S", 0)
		uow.Products().Add(p)
		return p.AddBatch("b1", 3, noETA)
	})
	if len(raised) != 1 {
		t.Fatalf("raised %d events, want 1", len(raised))
	}
	env := raised[0].Envelope
	if env.ID == "" || env.Channel != service.ChannelBatchCreated || env.Key != "S" ||
		env.CorrelationID != "corr-1" || env.CausationID != "cmd-1" {
		t.Errorf("envelope = %+v", env)
	}
	if diff := cmp.Diff(raised, s.raised()); diff != "" {
		t.Errorf("outbox (-returned +stored):\n%s", diff)
	}
	dec, err := service.Messages().Decode(env)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if diff := cmp.Diff(raised[0].Event, dec); diff != "" {
		t.Errorf("payload decodes to (-raised +decoded):\n%s", diff)
	}
}
