package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A partition's lease lives in the key-value bucket LeaseBucket(stream),
// under the key LeaseKey(group, channel, partition). Its value is a
// leaseRecord; its revision changes each time the holder renews it.

// leaseRecord is the value of a lease.
type leaseRecord struct {
	// Holder names the partition run that holds the lease; "" when it was
	// given back.
	Holder string `json:"holder,omitempty"`
	// Consumer is when the consumer that Handed refers to was created: the
	// counts mean nothing to a consumer created again (a Rewind).
	Consumer time.Time `json:"consumer,omitzero"`
	// Handed counts, by stream sequence, how many times messages that are
	// delivered but not acknowledged were handed to a handler, so that the
	// next holder hands them with the right Attempt (the server counts
	// deliveries, which is not the same thing: a message fetched in a batch
	// but never handed was delivered, a message retried in place was not
	// delivered again).
	Handed map[uint64]int `json:"handed,omitempty"`
}

func (r leaseRecord) encode() []byte {
	b, _ := json.Marshal(r)
	return b
}

// maxHanded bounds the counts a record keeps.
const maxHanded = 4096

var errLeaseLost = errors.New("nats: partition lease lost")

// LeaseBucket returns the name of the key-value bucket that holds the
// partition leases of the groups reading stream: "<stream>_leases", with
// characters a bucket's name may not hold replaced by '_'.
func LeaseBucket(stream string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, stream) + "_leases"
}

// LeaseKey returns the key of the lease of group on a channel's partition:
// the name of its consumer (ConsumerName) when it is a valid key, else
// "h_" and the name in hexadecimal.
func LeaseKey(group, channel string, partition int) string {
	name := ConsumerName(group, channel, partition)
	for _, r := range name {
		if !(r == '_' || r == '-' || r == '=' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "h_" + hex.EncodeToString([]byte(name))
		}
	}
	return name
}

// LeaseBucket returns the name of the transport's lease bucket.
func (t *JetStream) LeaseBucket() string { return LeaseBucket(t.cfg.stream) }

// leaseKV returns the lease bucket, creating it (or updating its settings)
// the first time, and again after leaseKVFailed.
func (t *JetStream) leaseKV(ctx context.Context) (jetstream.KeyValue, error) {
	t.kvMu.Lock()
	defer t.kvMu.Unlock()
	if t.kv != nil {
		return t.kv, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := t.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket:      t.LeaseBucket(),
		Description: "stockflow partition leases of stream " + t.cfg.stream,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.cfg.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating lease bucket %s: %w", t.LeaseBucket(), err)
	}
	t.kv = kv
	return kv, nil
}

// leaseKVFailed forgets kv after an error: the next leaseKV makes sure of
// the bucket again (a broker that lost its store lost it too).
func (t *JetStream) leaseKVFailed(kv jetstream.KeyValue) {
	t.kvMu.Lock()
	defer t.kvMu.Unlock()
	if t.kv == kv {
		t.kv = nil
	}
}

// conflict reports whether err says that the lease's revision moved: it
// was renewed, taken or given back by someone else.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// holderID names a partition run: host, process, and a random part.
func holderID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// epoch is the origin of the lease deadlines (monotonic).
var epoch = time.Now()

// lease is a lease held.
type lease struct {
	t   *JetStream
	kv  jetstream.KeyValue
	key string

	mu  sync.Mutex // orders writes
	rec leaseRecord
	rev uint64

	lost     atomic.Bool
	deadline atomic.Int64 // since epoch: the lease is ours until then, unless lost
}

// valid reports whether the lease is still held, for sure.
func (l *lease) valid() bool {
	return !l.lost.Load() && time.Since(epoch) < time.Duration(l.deadline.Load())
}

// renewed records a write that started at start.
func (l *lease) renewed(start time.Time) {
	l.deadline.Store(int64(start.Sub(epoch) + l.t.leaseTTL()))
}

// write renews the lease, with the record changed by change (nil: as it
// is). It returns errLeaseLost once the lease is someone else's, or has not
// been renewed within its TTL.
func (l *lease) write(ctx context.Context, change func(*leaseRecord)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost.Load() {
		return errLeaseLost
	}
	rec := l.rec
	if change != nil {
		change(&rec)
	}
	ctx, cancel := context.WithTimeout(ctx, min(l.t.leaseTTL()/3, 5*time.Second))
	defer cancel()
	start := time.Now()
	rev, err := l.kv.Update(ctx, l.key, rec.encode(), l.rev)
	switch {
	case err == nil:
		l.rec, l.rev = rec, rev
		l.renewed(start)
		return nil
	case conflict(err) || errors.Is(err, jetstream.ErrKeyNotFound):
		l.lost.Store(true)
		return fmt.Errorf("%w: %v", errLeaseLost, err)
	case !l.valid():
		l.lost.Store(true)
		l.t.leaseKVFailed(l.kv)
		return fmt.Errorf("%w: not renewed within %v: %v", errLeaseLost, l.t.leaseTTL(), err)
	}
	l.t.leaseKVFailed(l.kv)
	return err
}

// keep renews the lease every TTL/3 until stop is closed; it calls lost
// once the lease is lost.
func (l *lease) keep(stop <-chan struct{}, lost func(err error)) {
	tick := time.NewTicker(l.t.leaseTTL() / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		err := l.write(context.Background(), nil)
		if errors.Is(err, errLeaseLost) {
			lost(err)
			return
		}
		if err != nil {
			l.t.log.Debug("nats lease renewal failed", "key", l.key, "err", err)
		}
	}
}

// release gives the lease back, leaving rec (its Holder emptied) for the
// next holder, unless it was lost.
func (l *lease) release(ctx context.Context, rec leaseRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost.Swap(true) {
		return
	}
	rec.Holder = ""
	if _, err := l.kv.Update(ctx, l.key, rec.encode(), l.rev); err != nil {
		l.t.log.Debug("nats lease not given back: the next holder takes it once it lapses", "key", l.key, "err", err)
	}
}

// acquire waits until the partition's lease is free, or its holder stopped
// renewing it for the lease's TTL, and takes it. It returns nil once ctx is
// done.
func (pt *partition) acquire(ctx context.Context) *lease {
	t := pt.t
	var seenRev uint64
	var seenAt time.Time
	var backoff time.Duration
	failing := false
	for ctx.Err() == nil {
		l, err := pt.tryAcquire(ctx, &seenRev, &seenAt)
		if l != nil {
			if failing {
				t.log.InfoContext(ctx, "nats lease bucket reachable again", "group", pt.group, "channel", pt.channel, "partition", pt.p)
			}
			return l
		}
		wait := t.leasePoll()
		if err != nil && ctx.Err() == nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			wait = backoff
			level := slog.LevelDebug
			if !failing {
				level = slog.LevelWarn
			}
			failing = true
			t.log.Log(ctx, level, "nats partition lease unavailable, retrying", "group", pt.group, "channel", pt.channel, "partition", pt.p, "err", err, "retry_in_ms", backoff.Milliseconds())
		} else if err == nil {
			backoff, failing = 0, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// tryAcquire takes the lease if it can: it returns nil and no error when
// someone else holds it.
func (pt *partition) tryAcquire(ctx context.Context, seenRev *uint64, seenAt *time.Time) (*lease, error) {
	t := pt.t
	kv, err := t.leaseKV(ctx)
	if err != nil {
		return nil, err
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := kv.Get(gctx, pt.key)
	var rec leaseRecord
	var rev uint64
	start := time.Now()
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		rec = leaseRecord{Holder: pt.id}
		rev, err = kv.Create(gctx, pt.key, rec.encode())
		if conflict(err) {
			return nil, nil
		}
		if err != nil {
			t.leaseKVFailed(kv)
			return nil, err
		}
	case err != nil:
		t.leaseKVFailed(kv)
		return nil, err
	default:
		if json.Unmarshal(e.Value(), &rec) != nil {
			rec = leaseRecord{Holder: "?"} // not ours to read: held by someone
		}
		if e.Revision() != *seenRev {
			*seenRev, *seenAt = e.Revision(), time.Now()
		}
		free := rec.Holder == "" || rec.Holder == pt.id
		lapsed := time.Since(*seenAt) >= t.leaseTTL()
		if !free && !lapsed {
			return nil, nil
		}
		prev := rec.Holder
		rec.Holder = pt.id
		start = time.Now()
		rev, err = kv.Update(gctx, pt.key, rec.encode(), e.Revision())
		if conflict(err) {
			return nil, nil
		}
		if err != nil {
			t.leaseKVFailed(kv)
			return nil, err
		}
		if !free {
			t.log.InfoContext(ctx, "nats took over a partition whose holder stopped renewing its lease",
				"group", pt.group, "channel", pt.channel, "partition", pt.p, "previous_holder", prev)
		}
	}
	l := &lease{t: t, kv: kv, key: pt.key, rec: rec, rev: rev}
	l.renewed(start)
	return l, nil
}
