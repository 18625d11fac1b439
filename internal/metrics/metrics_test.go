package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/superd/superd/internal/metrics/metricstest"
)

// TestNilDoesNothing checks that a superd without metrics can call
// every hook on its nil Registry and nil Services.
func TestNilDoesNothing(t *testing.T) {
	var r *Registry
	s := r.For("x")
	if s != nil {
		t.Fatalf("For on a nil Registry = %v, want nil", s)
	}
	s.Accepted()
	s.Refused(RefusedAccess)
	s.Waited(WaitRate)
	s.Datagram()
	s.Starting()
	s.Started(s.Now())
	s.Abandoned()
	s.Exited(OutcomeSignal, time.Second)
	s.Opened()
	s.Closed()
	r.Drop("x")
	r.SetServices([]ServiceInfo{{Name: "x"}})
	r.Reloaded(true)
	if !s.Now().IsZero() {
		t.Error("Now of a nil Service read the clock")
	}
}

// TestServiceSeries checks what each hook counts, that For on a name
// again counts on the same series, and that Drop removes every series
// of one service and nothing else.
func TestServiceSeries(t *testing.T) {
	r := New("1.2.3", "abc")
	a, b := r.For("a"), r.For("b")
	a.Accepted()
	r.For("a").Accepted() // the same series
	a.Refused(RefusedPerSource)
	a.Refused(RefusedStartFailed)
	a.Refused(numRefusals) // out of range: ignored
	a.Waited(WaitInstances)
	a.Starting()
	a.Started(time.Now().Add(-time.Millisecond))
	a.Exited(OutcomeTimeout, 2*time.Second)
	a.Starting()
	a.Abandoned()
	b.Datagram()
	b.Opened()
	r.SetServices([]ServiceInfo{{Name: "a", Listen: "tcp/127.0.0.1:1", Mode: "nowait"}, {Name: "b", Listen: "udp/:2", Mode: "builtin"}})
	r.Reloaded(true)
	r.Reloaded(false)
	r.Reloaded(false)

	f := metricstest.Gather(t, r.Gatherer())
	for _, s := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"superd_connections_accepted_total", []string{"service", "a"}, 2},
		{"superd_connections_refused_total", []string{"service", "a", "reason", "per_source"}, 1},
		{"superd_connections_refused_total", []string{"service", "a", "reason", "start_failed"}, 1},
		{"superd_connections_refused_total", []string{"service", "a", "reason", "access"}, 0},
		{"superd_admission_waits_total", []string{"service", "a", "reason", "instances"}, 1},
		{"superd_handlers_running", []string{"service", "a"}, 0},
		{"superd_handler_exits_total", []string{"service", "a", "outcome", "timeout"}, 1},
		{"superd_handler_start_seconds", []string{"service", "a"}, 1},
		{"superd_handler_duration_seconds", []string{"service", "a"}, 1},
		{"superd_datagrams_total", []string{"service", "b"}, 1},
		{"superd_handlers_running", []string{"service", "b"}, 1},
		{"superd_handler_last_exit_timestamp_seconds", []string{"service", "b"}, 0},
		{"superd_services", nil, 2},
		{"superd_service_info", []string{"service", "b", "listen", "udp/:2", "mode", "builtin"}, 1},
		{"superd_reloads_total", []string{"result", "success"}, 1},
		{"superd_reloads_total", []string{"result", "failure"}, 2},
		{"superd_build_info", []string{"version", "1.2.3", "commit", "abc", "goversion", runtime.Version()}, 1},
	} {
		if got := f.Value(t, s.name, s.labels...); got != s.want {
			t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
		}
	}
	if ts := f.Value(t, "superd_handler_last_exit_timestamp_seconds", "service", "a"); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last exit of a = %v, want about now", ts)
	}

	before := f.Series("service", "b")
	r.Drop("a")
	r.SetServices([]ServiceInfo{{Name: "b", Listen: "udp/:2", Mode: "builtin"}})
	f = metricstest.Gather(t, r.Gatherer())
	if n := f.Series("service", "a"); n != 0 {
		t.Errorf("%d series of a after Drop, want none", n)
	}
	if n := f.Series("service", "b"); n != before {
		t.Errorf("%d series of b after dropping a, want %d as before", n, before)
	}
	a.Accepted() // a dropped handle counts nowhere, and does not panic
	if n := metricstest.Gather(t, r.Gatherer()).Series("service", "a"); n != 0 {
		t.Errorf("a dropped handle brought back %d series", n)
	}
}

// TestHandlerExposition checks that Handler serves an exposition the
// Prometheus text parser reads whole.
func TestHandlerExposition(t *testing.T) {
	r := New("v", "c")
	r.For("svc").Exited(OutcomeSuccess, time.Millisecond)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	f := metricstest.Parse(t, bytes.NewReader(rec.Body.Bytes()))
	for _, name := range []string{"superd_handler_exits_total", "superd_handler_duration_seconds", "go_goroutines", "process_cpu_seconds_total"} {
		if f[name] == nil {
			t.Errorf("exposition lacks %s", name)
		}
	}
}

// BenchmarkHotPath measures the calls a connection makes on a nowait
// service (accept, start, exit), with metrics on and off.
func BenchmarkHotPath(b *testing.B) {
	for _, tt := range []struct {
		name string
		s    *Service
	}{{"on", New("v", "c").For("svc")}, {"off", nil}} {
		b.Run(tt.name, func(b *testing.B) {
			s := tt.s
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Accepted()
					at := s.Now()
					s.Starting()
					s.Started(at)
					s.Exited(OutcomeSuccess, time.Millisecond)
				}
			})
		})
	}
}
