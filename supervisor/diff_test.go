package supervisor

import (
	"slices"
	"testing"
	"time"

	"github.com/superd/superd/config"
)

func tcp(addr string) config.ListenKey { return config.ListenKey{Network: "tcp", Address: addr} }

func svcAt(name, addr string) *config.Service {
	return &config.Service{
		Name:   name,
		Listen: tcp(addr),
		Exec:   config.Exec{Path: "/bin/cat", Argv: []string{"cat"}, Umask: -1},
		Limits: config.Limits{Instances: 40},
	}
}

// with returns a copy of svc changed by f; svc itself is left alone, as
// a loaded *config.Config is immutable.
func with(svc *config.Service, f func(*config.Service)) *config.Service {
	c := *svc
	c.Exec.Argv = slices.Clone(svc.Exec.Argv)
	f(&c)
	return &c
}

func names(svcs []*config.Service) []string {
	out := []string{}
	for _, s := range svcs {
		out = append(out, s.Name)
	}
	return out
}

func keys(ks []config.ListenKey) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.String())
	}
	return out
}

func TestDiff(t *testing.T) {
	a := svcAt("a", "127.0.0.1:1")
	b := svcAt("b", "127.0.0.1:2")
	c := svcAt("c", "127.0.0.1:3")
	tests := []struct {
		name    string
		running []*config.Service
		next    []*config.Service
		bind    []string
		keep    []string
		update  []string
		close   []string
	}{
		{name: "nothing to nothing"},
		{name: "first start", next: []*config.Service{b, a}, bind: []string{"a", "b"}},
		{name: "same again", running: []*config.Service{a, b}, next: []*config.Service{a, b}, keep: []string{"a", "b"}},
		{name: "equal copy is kept", running: []*config.Service{a},
			next: []*config.Service{with(a, func(*config.Service) {})}, keep: []string{"a"}},
		{name: "everything removed", running: []*config.Service{a, b},
			close: []string{"tcp/127.0.0.1:1", "tcp/127.0.0.1:2"}},
		{name: "added and removed", running: []*config.Service{a, b}, next: []*config.Service{b, c},
			bind: []string{"c"}, keep: []string{"b"}, close: []string{"tcp/127.0.0.1:1"}},
		{name: "limit changed", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Limits.Instances = 2 })}, update: []string{"a"}},
		{name: "argument changed", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Exec.Argv = append(s.Exec.Argv, "-u") })}, update: []string{"a"}},
		{name: "timeout changed", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Limits.Timeout = time.Minute })}, update: []string{"a"}},
		{name: "renamed on the same socket", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Name = "z" })}, update: []string{"z"}},
		{name: "nowait to wait on the same socket", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Wait = true })}, update: []string{"a"}},
		{name: "handler to built-in on the same socket", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Builtin, s.Exec = "echo", config.Exec{} })}, update: []string{"a"}},
		{name: "moved to another port", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Listen = tcp("127.0.0.1:9") })},
			bind: []string{"a"}, close: []string{"tcp/127.0.0.1:1"}},
		{name: "tcp to tcp4 is another identity", running: []*config.Service{a},
			next: []*config.Service{with(a, func(s *config.Service) { s.Listen.Network = "tcp4" })},
			bind: []string{"a"}, close: []string{"tcp/127.0.0.1:1"}},
		{name: "disabled closes", running: []*config.Service{a, b},
			next: []*config.Service{a, with(b, func(s *config.Service) { s.Disabled = true })},
			keep: []string{"a"}, close: []string{"tcp/127.0.0.1:2"}},
		{name: "disabled is not bound", next: []*config.Service{with(a, func(s *config.Service) { s.Disabled = true })}},
		{name: "two services swap sockets", running: []*config.Service{a, b},
			next:   []*config.Service{with(a, func(s *config.Service) { s.Listen = b.Listen }), with(b, func(s *config.Service) { s.Listen = a.Listen })},
			update: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			running := make(map[config.ListenKey]*config.Service)
			for _, s := range tt.running {
				running[s.Listen] = s
			}
			before := len(running)
			p := diff(running, tt.next)
			check := func(what string, got, want []string) {
				t.Helper()
				if want == nil {
					want = []string{}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s = %q, want %q", what, got, want)
				}
			}
			check("bind", names(p.bind), tt.bind)
			check("keep", names(p.keep), tt.keep)
			check("update", names(p.update), tt.update)
			check("close", keys(p.close), tt.close)
			if len(running) != before {
				t.Errorf("diff changed its input: %d running entries, had %d", len(running), before)
			}
		})
	}
}
