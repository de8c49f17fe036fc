// Package metrics exposes what stockflow does in the Prometheus format:
// requests by route and status, messages handled and failed, the outbox's
// depth and the relay's lag, version-conflict retries.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's metrics.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	handled      *prometheus.CounterVec
	consumed     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	relayed      *prometheus.CounterVec
	relayFailed  *prometheus.CounterVec
	retries      *prometheus.CounterVec
	authFailures *prometheus.CounterVec
}

// New returns metrics registered with a registry of their own, with the
// Go runtime's and the process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	return &Metrics{
		reg: reg,
		requests: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_http_requests_total", Help: "HTTP requests answered, by route and status.",
		}, []string{"route", "status"})).(*prometheus.CounterVec),
		duration: f(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stockflow_http_request_duration_seconds", Help: "HTTP request latency, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"})).(*prometheus.HistogramVec),
		handled: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_bus_messages_handled_total", Help: "Commands and events handled by the message bus, by service, type and outcome (ok or error).",
		}, []string{"service", "type", "outcome"})).(*prometheus.CounterVec),
		consumed: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_messages_consumed_total", Help: "Broker messages consumed, by service, channel and outcome (ok or failed: to be redelivered).",
		}, []string{"service", "channel", "outcome"})).(*prometheus.CounterVec),
		deadLettered: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_messages_dead_lettered_total", Help: "Broker messages set aside as dead letters, by service and channel.",
		}, []string{"service", "channel"})).(*prometheus.CounterVec),
		relayed: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_outbox_relayed_total", Help: "Messages the outbox relay published, by service.",
		}, []string{"service"})).(*prometheus.CounterVec),
		relayFailed: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_outbox_relay_failures_total", Help: "Relay rounds that failed to publish (the messages are kept and retried), by service.",
		}, []string{"service"})).(*prometheus.CounterVec),
		retries: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_version_conflict_retries_total", Help: "Transactions retried after losing a race for an aggregate (optimistic concurrency), by service.",
		}, []string{"service"})).(*prometheus.CounterVec),
		authFailures: f(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stockflow_http_auth_failures_total", Help: "HTTP requests refused, by reason: missing, malformed, unknown_key, invalid_token, expired_token, jwks_unavailable (401) or forbidden (403).",
		}, []string{"reason"})).(*prometheus.CounterVec),
	}
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records an HTTP request; route is the mux pattern.
func (m *Metrics) ObserveRequest(route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// AuthFailed counts a request refused for reason (package auth).
func (m *Metrics) AuthFailed(reason string) {
	m.authFailures.WithLabelValues(reason).Inc()
}

// Depth tells the outbox's depth and the age of its oldest message.
type Depth interface {
	Depth(ctx context.Context) (int, time.Time, error)
}

// Service returns the metrics of one service.
func (m *Metrics) Service(name string) *Service {
	return &Service{m: m, name: name}
}

// WatchOutbox adds the gauges of the service's outbox: its depth and the
// age of its oldest message.
func (s *Service) WatchOutbox(outbox Depth) {
	m, name := s.m, s.name
	{
		// Both gauges read one query: a scrape asks them one after the other.
		var mu sync.Mutex
		var at time.Time
		var n int
		var oldest time.Time
		depth := func() (int, time.Time) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(at) > time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				var err error
				if n, oldest, err = outbox.Depth(ctx); err != nil {
					n, oldest = -1, time.Time{}
				}
				at = time.Now()
			}
			return n, oldest
		}
		labels := prometheus.Labels{"service": name}
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stockflow_outbox_depth", Help: "Messages waiting in the outbox to be published (-1: unknown).", ConstLabels: labels,
		}, func() float64 { n, _ := depth(); return float64(n) }))
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stockflow_outbox_relay_lag_seconds", Help: "Age of the oldest message waiting in the outbox (0: none waiting).", ConstLabels: labels,
		}, func() float64 {
			if _, oldest := depth(); !oldest.IsZero() {
				return time.Since(oldest).Seconds()
			}
			return 0
		}))
	}
}

// Service is one service's metrics; it observes its bus, relay and
// consumer.
type Service struct {
	m    *Metrics
	name string
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Handled implements messaging.BusMetrics.
func (s *Service) Handled(kind string, err error, _ time.Duration) {
	s.m.handled.WithLabelValues(s.name, kind, outcome(err)).Inc()
}

// Consumed implements messaging.ConsumerMetrics.
func (s *Service) Consumed(channel string, err error) {
	o := "ok"
	if err != nil {
		o = "failed"
	}
	s.m.consumed.WithLabelValues(s.name, channel, o).Inc()
}

// DeadLettered implements messaging.ConsumerMetrics.
func (s *Service) DeadLettered(channel string) {
	s.m.deadLettered.WithLabelValues(s.name, channel).Inc()
}

// Relayed implements messaging.RelayMetrics.
func (s *Service) Relayed(n int, _ time.Time) { s.m.relayed.WithLabelValues(s.name).Add(float64(n)) }

// RelayFailed implements messaging.RelayMetrics.
func (s *Service) RelayFailed() { s.m.relayFailed.WithLabelValues(s.name).Inc() }

// Retried counts a version-conflict retry.
func (s *Service) Retried() { s.m.retries.WithLabelValues(s.name).Inc() }

// Timers counts the durable timers not yet due.
type Timers interface {
	Scheduled(ctx context.Context) (int, error)
}

// WatchTimers adds the gauge of the service's durable timers not yet due.
func (s *Service) WatchTimers(timers Timers) {
	s.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stockflow_scheduled_messages", Help: "Durable timers waiting to be due (-1: unknown).",
		ConstLabels: prometheus.Labels{"service": s.name},
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := timers.Scheduled(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	}))
}
