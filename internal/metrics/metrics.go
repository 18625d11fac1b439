// Package metrics holds superd's Prometheus metrics: one Registry per
// superd process, with a Service of bound handles per service for the
// serve loops to count on.
//
// Every per-service child is bound once, in For, so that the hot path
// (an accept, a start, an exit) does an atomic add or two and nothing
// else: no map look-up, no label formatting, no allocation. A nil
// *Registry and a nil *Service are valid and count nothing, so that a
// superd whose metrics are off pays one nil check per event.
//
// The package deliberately does not serve HTTP, bind sockets or start
// goroutines: main serves Handler on the address of [superd] metrics.
// It uses its own prometheus.Registry, never the global default one,
// and keeps no state at package level.
package metrics

import (
	"net/http"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Refusal is why a connection was turned away, the reason label of
// superd_connections_refused_total.
type Refusal int

// The reasons of superd_connections_refused_total.
const (
	// RefusedPerSource: the client's source already had per_source
	// handlers.
	RefusedPerSource Refusal = iota
	// RefusedAccess: only_from or no_access turned the client away (and
	// a client superd could not identify, which passes no list).
	RefusedAccess
	// RefusedStartFailed: the handler could not be started.
	RefusedStartFailed
	// RefusedProxy: a proxy_protocol service got a connection from
	// outside proxy_from, or a PROXY header that was missing, malformed,
	// truncated or late.
	RefusedProxy
	numRefusals
)

// String is the label value.
func (r Refusal) String() string {
	switch r {
	case RefusedPerSource:
		return "per_source"
	case RefusedAccess:
		return "access"
	case RefusedStartFailed:
		return "start_failed"
	case RefusedProxy:
		return "proxy"
	}
	return "unknown"
}

// Wait is why a service stopped accepting to defer clients, the reason
// label of superd_admission_waits_total.
type Wait int

// The reasons of superd_admission_waits_total.
const (
	// WaitInstances: every instances slot was taken.
	WaitInstances Wait = iota
	// WaitRate: the rate's token bucket was empty.
	WaitRate
	numWaits
)

// String is the label value.
func (w Wait) String() string {
	switch w {
	case WaitInstances:
		return "instances"
	case WaitRate:
		return "rate"
	}
	return "unknown"
}

// Outcome is how a handler ended, the outcome label of
// superd_handler_exits_total.
type Outcome int

// The outcomes of superd_handler_exits_total.
const (
	// OutcomeSuccess: exit status 0.
	OutcomeSuccess Outcome = iota
	// OutcomeFailure: any other exit status (or an exit superd could not
	// learn).
	OutcomeFailure
	// OutcomeSignal: killed by a signal that no timeout sent.
	OutcomeSignal
	// OutcomeTimeout: the service's timeout struck, whatever the handler
	// did then.
	OutcomeTimeout
	numOutcomes
)

// String is the label value.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeSignal:
		return "signal"
	case OutcomeTimeout:
		return "timeout"
	}
	return "unknown"
}

// Histogram buckets, in seconds. A start is a fork and an exec: about a
// millisecond on an idle machine, tens of milliseconds through the
// confinement trampoline or under load, a second when something is
// wrong. A handler's life runs from a millisecond (a daytime answer) to
// an hour (an interactive session).
func startBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}
}

func durationBuckets() []float64 {
	return []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600}
}

// ServiceInfo is one running service as superd_service_info shows it.
type ServiceInfo struct {
	Name   string // the service label
	Listen string // network/address, as superd check prints it
	Mode   string // nowait, wait or builtin
}

// Registry holds every metric of one superd process. Its methods are
// safe for concurrent use; a nil *Registry does nothing.
type Registry struct {
	reg *prometheus.Registry

	accepted  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	waits     *prometheus.CounterVec
	datagrams *prometheus.CounterVec
	running   *prometheus.GaugeVec
	exits     *prometheus.CounterVec
	start     *prometheus.HistogramVec
	duration  *prometheus.HistogramVec
	lastExit  *prometheus.GaugeVec
	// perService lists the vectors above, every one with a service
	// label, for Drop.
	perService []interface {
		DeletePartialMatch(prometheus.Labels) int
	}

	reloads *prometheus.CounterVec
	// services is the running set as the supervisor last published it
	// (SetServices); the services collector reads it at each scrape.
	services atomic.Pointer[[]ServiceInfo]
}

// New returns a Registry with superd's metrics, the Go runtime's and the
// process's collectors, and superd_build_info for version and commit.
func New(version, commit string) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	svc := []string{"service"}
	r.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_connections_accepted_total",
		Help: "Connections accepted (nowait and built-in stream services; a wait-mode handler accepts its own).",
	}, svc)
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_connections_refused_total",
		Help: "Connections accepted and then closed without being served, by reason (per_source, access, start_failed, proxy).",
	}, []string{"service", "reason"})
	r.waits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_admission_waits_total",
		Help: "Times the service stopped accepting to defer clients in the backlog, by reason (instances, rate).",
	}, []string{"service", "reason"})
	r.datagrams = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_datagrams_total",
		Help: "Datagrams received by a datagram built-in.",
	}, svc)
	r.running = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "superd_handlers_running",
		Help: "Handlers running now (built-in connections included).",
	}, svc)
	r.exits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_handler_exits_total",
		Help: "Handler processes reaped, by outcome (success, failure, signal, timeout).",
	}, []string{"service", "outcome"})
	r.start = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "superd_handler_start_seconds",
		Help:    "Time from a connection's accept (wait mode: the socket's readiness) to its handler's start.",
		Buckets: startBuckets(),
	}, svc)
	r.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "superd_handler_duration_seconds",
		Help:    "Handler processes' lifetimes, from start to reap.",
		Buckets: durationBuckets(),
	}, svc)
	r.lastExit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "superd_handler_last_exit_timestamp_seconds",
		Help: "Unix time of the service's last handler exit; 0 when none has exited.",
	}, svc)
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "superd_reloads_total",
		Help: "Configuration reloads, by result (success, failure).",
	}, []string{"result"})
	// Both results exist from the start, so that a rate() over failures
	// works before the first one.
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("failure")
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "superd_build_info",
		Help:        "Always 1; the labels say which superd runs.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "goversion": runtime.Version()},
	})
	build.Set(1)
	r.perService = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{r.accepted, r.refused, r.waits, r.datagrams, r.running, r.exits, r.start, r.duration, r.lastExit}
	r.reg.MustRegister(r.accepted, r.refused, r.waits, r.datagrams, r.running, r.exits,
		r.start, r.duration, r.lastExit, r.reloads, build, servicesCollector{r},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the metrics in the Prometheus exposition formats. It
// serves a few scrapes at once at most: more get 503, so that a flood of
// requests cannot make superd gather without end.
func (r *Registry) Handler() http.Handler {
	if r == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// Gatherer returns what Handler serves, for tests and tools that read
// the metrics in-process.
func (r *Registry) Gatherer() prometheus.Gatherer {
	if r == nil {
		return prometheus.Gatherers{}
	}
	return r.reg
}

// For returns the handles of service name, creating its series (at
// zero) the first time. Calling it again for a name returns handles on
// the same series, so a reload that keeps a service keeps its counts.
// A nil Registry returns nil.
func (r *Registry) For(name string) *Service {
	if r == nil {
		return nil
	}
	s := &Service{
		accepted:  r.accepted.WithLabelValues(name),
		datagrams: r.datagrams.WithLabelValues(name),
		running:   r.running.WithLabelValues(name),
		start:     r.start.WithLabelValues(name),
		duration:  r.duration.WithLabelValues(name),
		lastExit:  r.lastExit.WithLabelValues(name),
	}
	for i := range s.refused {
		s.refused[i] = r.refused.WithLabelValues(name, Refusal(i).String())
	}
	for i := range s.waits {
		s.waits[i] = r.waits.WithLabelValues(name, Wait(i).String())
	}
	for i := range s.exits {
		s.exits[i] = r.exits.WithLabelValues(name, Outcome(i).String())
	}
	return s
}

// Drop deletes every series of service name: it was removed. Handles
// For returned before go on working but count nowhere; a later For
// starts the service's series again from zero.
func (r *Registry) Drop(name string) {
	if r == nil {
		return
	}
	for _, v := range r.perService {
		v.DeletePartialMatch(prometheus.Labels{"service": name})
	}
}

// SetServices publishes the running services: superd_services counts
// them and superd_service_info has one series for each. The supervisor
// calls it whenever its running set changes; list is copied.
func (r *Registry) SetServices(list []ServiceInfo) {
	if r == nil {
		return
	}
	c := slices.Clone(list)
	r.services.Store(&c)
}

// Reloaded counts a reload: ok for one that was applied, false for one
// that was refused or rolled back.
func (r *Registry) Reloaded(ok bool) {
	if r == nil {
		return
	}
	result := "failure"
	if ok {
		result = "success"
	}
	r.reloads.WithLabelValues(result).Inc()
}

// servicesCollector turns the published running set into
// superd_services and superd_service_info at each scrape, so that a
// scrape sees one running set, never half of a reload's.
type servicesCollector struct{ r *Registry }

// The descriptions servicesCollector emits.
func servicesDesc() *prometheus.Desc {
	return prometheus.NewDesc("superd_services", "Services listening now.", nil, nil)
}

func serviceInfoDesc() *prometheus.Desc {
	return prometheus.NewDesc("superd_service_info", "Always 1 for a service listening now; the labels say where and how.",
		[]string{"service", "listen", "mode"}, nil)
}

// Describe implements prometheus.Collector.
func (c servicesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- servicesDesc()
	ch <- serviceInfoDesc()
}

// Collect implements prometheus.Collector.
func (c servicesCollector) Collect(ch chan<- prometheus.Metric) {
	var list []ServiceInfo
	if p := c.r.services.Load(); p != nil {
		list = *p
	}
	ch <- prometheus.MustNewConstMetric(servicesDesc(), prometheus.GaugeValue, float64(len(list)))
	info := serviceInfoDesc()
	for _, s := range list {
		ch <- prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1, s.Name, s.Listen, s.Mode)
	}
}

// Service holds the bound series of one service. Its methods are safe
// for concurrent use and do not allocate; a nil *Service does nothing.
type Service struct {
	accepted  prometheus.Counter
	refused   [numRefusals]prometheus.Counter
	waits     [numWaits]prometheus.Counter
	datagrams prometheus.Counter
	running   prometheus.Gauge
	exits     [numOutcomes]prometheus.Counter
	start     prometheus.Observer
	duration  prometheus.Observer
	lastExit  prometheus.Gauge
}

// Accepted counts an accepted connection.
func (s *Service) Accepted() {
	if s != nil {
		s.accepted.Inc()
	}
}

// Refused counts a connection turned away for reason r.
func (s *Service) Refused(r Refusal) {
	if s != nil && r >= 0 && r < numRefusals {
		s.refused[r].Inc()
	}
}

// Waited counts a stop of the accept loop for reason w.
func (s *Service) Waited(w Wait) {
	if s != nil && w >= 0 && w < numWaits {
		s.waits[w].Inc()
	}
}

// Datagram counts a datagram a built-in received.
func (s *Service) Datagram() {
	if s != nil {
		s.datagrams.Inc()
	}
}

// Now returns the time for a later Started; the zero time when s is nil,
// so that a superd without metrics does not read the clock for them.
func (s *Service) Now() time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Now()
}

// Starting counts a handler about to start as running. It comes before
// the start, so that an exit reaped at once never takes the gauge below
// zero; Started, Abandoned or Exited follows.
func (s *Service) Starting() {
	if s != nil {
		s.running.Inc()
	}
}

// Started records a handler's start, since being when its client was
// accepted (Now's value).
func (s *Service) Started(since time.Time) {
	if s != nil {
		s.start.Observe(time.Since(since).Seconds())
	}
}

// Abandoned undoes a Starting whose handler never ran: it no longer
// counts as running. The caller counts the refusal (RefusedStartFailed).
func (s *Service) Abandoned() {
	if s != nil {
		s.running.Dec()
	}
}

// Exited records a handler's exit: outcome o after running for d.
func (s *Service) Exited(o Outcome, d time.Duration) {
	if s == nil {
		return
	}
	s.running.Dec()
	if o >= 0 && o < numOutcomes {
		s.exits[o].Inc()
	}
	s.duration.Observe(d.Seconds())
	s.lastExit.Set(float64(time.Now().UnixNano()) / 1e9)
}

// Opened counts a built-in connection as running; Closed ends it.
func (s *Service) Opened() {
	if s != nil {
		s.running.Inc()
	}
}

// Closed ends a built-in connection counted by Opened.
func (s *Service) Closed() {
	if s != nil {
		s.running.Dec()
	}
}
