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
	"fmt"
	"time"

	"github.com/stockflow/stockflow/internal/messaging"
)

// Query asks Find for up to Limit documents of Kind whose Index is Index
// (any index when Index is ""), by id, descending when NewestFirst (ids
// made by messaging.NewID sort by time). After, when set, is the last id of
// the page before: the page starts past it.
type Query struct {
	Kind, Index string
	After       string
	Limit       int
	NewestFirst bool
}

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
	// Get returns the document kind/id, or an error of kind fail.NotFound.
	Get(ctx context.Context, kind, id string) (Doc, error)
	// Put stores d.Body as the document d.Kind/d.ID at d.Version+1, d.Version
	// being the version it was read at (0 for a new document); it fails
	// with messaging.ErrConcurrentUpdate at commit or before when another
	// transaction stored that version first.
	Put(ctx context.Context, d Doc) error
	// Raise stores the messages in the outbox with the transaction.
	Raise(msgs ...messaging.Raised)
}

// Store is a service's documents and messaging tables.
type Store interface {
	// Transact runs fn in one transaction, the unit of work
	// (messaging.UnitOfWork): it returns the messages fn raised, once
	// committed; it runs fn again when it lost a race; it returns
	// messaging.ErrAlreadyHandled, changing nothing, when the context names
	// a message its consumer handled already.
	Transact(ctx context.Context, fn func(context.Context, Tx) error) ([]messaging.Raised, error)
	// Get reads a committed document.
	Get(ctx context.Context, kind, id string) (Doc, error)
	// Find returns the documents q asks for.
	Find(ctx context.Context, q Query) ([]Doc, error)
	// Messaging is the outbox, inbox and dead letters of the same database.
	Messaging() messaging.Store
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	Close()
}

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

// Aggregate is what a service keeps in a document store: it knows whether
// it changed since it was loaded, and the events it raised meanwhile.
type Aggregate interface {
	Changed() bool
	Events() []any
}

// SaveAggregate stores a, if it changed, as the document kind/id read at
// version (0: new), found by index, with the events it raised, enveloped
// by reg, in the outbox of the same transaction.
func SaveAggregate(ctx context.Context, tx Tx, reg *messaging.Registry, kind, id string, version int64, index string, a Aggregate) error {
	if !a.Changed() {
		return nil
	}
	if err := Save(ctx, tx, kind, id, version, index, a); err != nil {
		return err
	}
	for _, ev := range a.Events() {
		env, err := reg.Envelope(ctx, ev)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, id, err)
		}
		tx.Raise(messaging.Raised{Envelope: env, Event: ev})
	}
	return nil
}
