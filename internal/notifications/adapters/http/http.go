// Package http is the notifications service's HTTP API: the notifications
// and how their delivery went.
package http

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/stockflow/stockflow/internal/httpx"
	"github.com/stockflow/stockflow/internal/notifications/domain"
	"github.com/stockflow/stockflow/internal/notifications/service"
)

// Notifications reads notifications.
type Notifications interface {
	Notification(ctx context.Context, id string) (*domain.Notification, error)
	Notifications(ctx context.Context, limit int) ([]*domain.Notification, error)
}

// API serves the notifications routes.
type API struct {
	Notifications Notifications
	Log           *slog.Logger
}

// Register adds the notifications routes to mux.
func (a *API) Register(mux httpx.Mux) {
	mux.HandleFunc("GET /notifications", a.list)
	mux.HandleFunc("GET /notifications/{id}", a.get)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, err := httpx.PathRef(r, "id")
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	n, err := a.Notifications.Notification(r.Context(), id)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, n)
}

// list answers the latest notifications, newest first: ?limit=N at most N
// (service.DefaultLimit unless given).
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	limit, err := httpx.QueryInt(r, "limit", service.DefaultLimit)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	list, err := a.Notifications.Notifications(r.Context(), limit)
	if err != nil {
		httpx.Fail(w, r, a.Log, err)
		return
	}
	httpx.JSON(w, http.StatusOK, list)
}
