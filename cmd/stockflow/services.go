package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stockflow/stockflow/internal/allocation"
	"github.com/stockflow/stockflow/internal/crm"
	"github.com/stockflow/stockflow/internal/fail"
	"github.com/stockflow/stockflow/internal/notifications"
	"github.com/stockflow/stockflow/internal/orders"
	"github.com/stockflow/stockflow/internal/platform"
	"github.com/stockflow/stockflow/internal/warehouse"
)

// serviceDef is a service stockflow runs: how to open it, and how to
// migrate its PostgreSQL schema alone.
type serviceDef struct {
	name    string
	open    func(ctx context.Context, cfg platform.Config, f *serverFlags) (platform.Service, error)
	migrate func(ctx context.Context, dbURL string) error
}

// services are every service, in the order they start.
var services = []serviceDef{
	{
		name: allocation.Name,
		open: func(ctx context.Context, cfg platform.Config, f *serverFlags) (platform.Service, error) {
			return allocation.Open(ctx, cfg, allocation.Options{Backorders: f.backorders})
		},
		migrate: allocation.Migrate,
	},
	docService(orders.Name, func(ctx context.Context, cfg platform.Config, f *serverFlags) (platform.Service, error) {
		return orders.Open(ctx, cfg, orders.Options{ReservationTTL: f.reservationTTL})
	}),
	docService(warehouse.Name, func(ctx context.Context, cfg platform.Config, _ *serverFlags) (platform.Service, error) {
		return warehouse.Open(ctx, cfg)
	}),
	docService(crm.Name, func(ctx context.Context, cfg platform.Config, _ *serverFlags) (platform.Service, error) {
		return crm.Open(ctx, cfg)
	}),
	docService(notifications.Name, func(ctx context.Context, cfg platform.Config, f *serverFlags) (platform.Service, error) {
		svc, err := notifications.Open(ctx, cfg, notifications.Mail{SMTP: f.smtp, From: f.smtpFrom, StockTeam: splitList(f.stockTeam)})
		if errors.Is(err, fail.Invalid) {
			return nil, usageError{err}
		}
		return svc, err
	}),
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// docService defines a service kept in a document store.
func docService(name string, open func(context.Context, platform.Config, *serverFlags) (platform.Service, error)) serviceDef {
	return serviceDef{name: name, open: open, migrate: func(ctx context.Context, dbURL string) error {
		return platform.MigrateDocStore(ctx, dbURL, name)
	}}
}

func serviceNames() string {
	names := make([]string, len(services))
	for i, s := range services {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// lookup returns the services of names; all of them when names is empty.
func lookup(names []string) ([]serviceDef, error) {
	if len(names) == 0 {
		return services, nil
	}
	var out []serviceDef
next:
	for _, n := range names {
		for _, s := range services {
			if s.name == n {
				out = append(out, s)
				continue next
			}
		}
		return nil, usageError{fmt.Errorf("unknown service %q; services: %s", n, serviceNames())}
	}
	return out, nil
}
