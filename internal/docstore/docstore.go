// Package docstore keeps a service's aggregates as JSON documents, each
// with a version for optimistic concurrency, and commits them in one
// transaction with the messages they raised (the outbox) and the message
// being handled (the inbox). It is the repository and unit of work the
// orders, warehouse, CRM and notifications services share; sqlite/ and
// postgres/ are its two adapters, and docstoretest/ the contract both pass.
//
// A service's own repositories (in its service layer) are typed views of
// a Tx: Get and Put of its aggregates by kind and id.
package docstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

var (
	// ErrNotFound: no document of that kind has that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: another transaction changed the document first. Store
	// retries the transaction; a caller sees it only when retries ran out.
	ErrConflict = errors.New("concurrent update")
	// ErrAlreadyHandled: the consumer the context names already handled
	// the message it carries (the inbox); nothing was changed.
	ErrAlreadyHandled = errors.New("message already handled")
)

// Doc is a stored document.
type Doc struct {
	Kind    string
	ID      string
	Version int64
	// Index is a value documents are found by (Store.Find): a status, a
	// sku; empty for none.
	Index     string
	Body      json.RawMessage
	UpdatedAt time.Time
}

// Tx is one transaction's view of the store.
type Tx interface {
	// Get returns the document kind/id, or ErrNotFound.
	Get(ctx context.Context, kind, id string) (Doc, error)
	// Put stores d.Body as the document d.Kind/d.ID at d.Version+1, d.Version
	// being the version it was read at (0 for a new document); it fails
	// with ErrConflict at commit or before when another transaction
	// stored that version first.
	Put(ctx context.Context, d Doc) error
	// Raise stores the messages in the outbox with the transaction.
	Raise(msgs ...messaging.Raised)
}

// Store is a service's documents and messaging tables.
type Store interface {
	// Transact runs fn in one transaction and returns the messages it
	// raised, once committed. When fn fails with ErrConflict (or the store
	// sees a conflict) the transaction is run again, fn included, a few
	// times. When the context names a consumer and a message
	// (messaging.Meta), the message is recorded as handled in the same
	// transaction, and Transact returns ErrAlreadyHandled, changing
	// nothing, if it already was.
	Transact(ctx context.Context, fn func(context.Context, Tx) error) ([]messaging.Raised, error)
	// Get reads a committed document.
	Get(ctx context.Context, kind, id string) (Doc, error)
	// Find returns up to limit documents of kind whose Index is index (any
	// index when index is ""), by id, descending when newestFirst (ids
	// made by messaging.NewID sort by time).
	Find(ctx context.Context, kind, index string, limit int, newestFirst bool) ([]Doc, error)
	// Messaging is the outbox, inbox and dead letters of the same database.
	Messaging() messaging.Store
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close()
}

// MaxAttempts bounds the runs of a transaction that keeps losing races.
const MaxAttempts = 10

// Load decodes the document kind/id of tx into a T, and returns it with its
// version.
func Load[T any](ctx context.Context, tx Tx, kind, id string) (T, int64, error) {
	var v T
	d, err := tx.Get(ctx, kind, id)
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(d.Body, &v); err != nil {
		return v, 0, fmt.Errorf("decoding %s %s: %w", kind, id, err)
	}
	return v, d.Version, nil
}

// Save encodes v as the document kind/id, read at version (0: new).
func Save(ctx context.Context, tx Tx, kind, id string, version int64, index string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s %s: %w", kind, id, err)
	}
	return tx.Put(ctx, Doc{Kind: kind, ID: id, Version: version, Index: index, Body: body})
}

// Decode decodes the bodies of docs into Ts.
func Decode[T any](docs []Doc) ([]T, error) {
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		var v T
		if err := json.Unmarshal(d.Body, &v); err != nil {
			return nil, fmt.Errorf("decoding %s %s: %w", d.Kind, d.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Envelopes returns the envelopes of raised messages.
func Envelopes(raised []messaging.Raised) []messaging.Envelope {
	envs := make([]messaging.Envelope, len(raised))
	for i, r := range raised {
		envs[i] = r.Envelope
	}
	return envs
}
