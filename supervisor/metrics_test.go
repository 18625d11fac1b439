package supervisor_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/internal/metrics/metricstest"
)

// TestReloadMetrics checks the metrics across reloads: a kept service's
// counts survive, a removed or renamed one's series disappear, a reload
// rolled back leaves no series of the services it would have added, and
// superd_services, superd_service_info and superd_reloads_total follow.
func TestReloadMetrics(t *testing.T) {
	reg := metrics.New("test", "test")
	gather := func() metricstest.Families { return metricstest.Gather(t, reg.Gatherer()) }
	r := startWith(t, cfgOf(builtinSvc("keep", "127.0.0.1:0", "echo"), builtinSvc("gone", "127.0.0.2:0", "echo")), 0, reg)
	for _, name := range []string{"keep", "keep", "gone"} {
		c := dial(t, r.addr(t, name, 0))
		echoOnce(t, c, bufio.NewReader(c), "x")
		c.Close()
	}
	f := gather()
	if k, g := f.Value(t, "superd_connections_accepted_total", "service", "keep"), f.Value(t, "superd_connections_accepted_total", "service", "gone"); k != 2 || g != 1 {
		t.Fatalf("accepted keep, gone = %v, %v; want 2, 1", k, g)
	}
	if n := f.Value(t, "superd_services"); n != 2 || !f.Has("superd_service_info", "service", "gone", "listen", "tcp/127.0.0.2:0", "mode", "builtin") {
		t.Fatalf("superd_services = %v, want 2 with an info series for gone", n)
	}

	r.reload(t, cfgOf(builtinSvc("keep", "127.0.0.1:0", "echo"), execSvc("renamed", "127.0.0.2:0", "/bin/true")))
	f = gather()
	if n := f.Series("service", "gone"); n != 0 {
		t.Errorf("%d series of the removed service gone after the reload, want none", n)
	}
	if k := f.Value(t, "superd_connections_accepted_total", "service", "keep"); k != 2 {
		t.Errorf("accepted of the kept service after the reload = %v, want 2 (kept)", k)
	}
	if !f.Has("superd_service_info", "service", "renamed", "listen", "tcp/127.0.0.2:0", "mode", "nowait") || f.Value(t, "superd_services") != 2 {
		t.Errorf("service info after the reload lacks renamed (nowait) on tcp/127.0.0.2:0, or superd_services is not 2")
	}
	if ok, bad := f.Value(t, "superd_reloads_total", "result", "success"), f.Value(t, "superd_reloads_total", "result", "failure"); ok != 1 || bad != 0 {
		t.Errorf("reloads success, failure = %v, %v; want 1, 0", ok, bad)
	}

	// A reload that cannot load counts as failed and changes nothing.
	bad := errors.New("no such file")
	r.fail.Store(&bad)
	r.reload(t, nil)
	r.fail.Store(nil)
	f = gather()
	if ok, bad := f.Value(t, "superd_reloads_total", "result", "success"), f.Value(t, "superd_reloads_total", "result", "failure"); ok != 1 || bad != 1 {
		t.Errorf("reloads success, failure = %v, %v; want 1, 1", ok, bad)
	}

	// Removing everything leaves no per-service series at all.
	r.reload(t, cfgOf())
	f = gather()
	if n := f.Series("service", "keep") + f.Series("service", "renamed"); n != 0 {
		t.Errorf("%d per-service series after every service was removed, want none", n)
	}
	if n := f.Value(t, "superd_services"); n != 0 {
		t.Errorf("superd_services with nothing running = %v, want 0", n)
	}
}

// TestReloadRollbackDropsSeries checks that a reload rolled back leaves
// no series of the service it bound before an update failed, and counts
// as a failure. The update fails as in TestReloadRollback: the unix
// socket's file replaced by a symlink, which takes no chmod.
func TestReloadRollbackDropsSeries(t *testing.T) {
	reg := metrics.New("test", "test")
	path := filepath.Join(t.TempDir(), "u.sock")
	u := &config.Service{Name: "u", Listen: config.ListenKey{Network: "unix", Address: path}, Builtin: "echo",
		SocketMode: 0o600, Limits: config.Limits{Instances: 16}}
	r := startWith(t, cfgOf(u), 0, reg)
	r.addr(t, "u", 0)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(path+".elsewhere", path); err != nil {
		t.Fatal(err)
	}
	u2 := *u
	u2.SocketMode = 0o660
	r.reload(t, cfgOf(builtinSvc("n", "127.0.0.2:0", "echo"), &u2))
	r.log.Wait(t, match("reload_failed", "service", "u"))
	r.addr(t, "n", 0) // bound, then closed by the rollback
	f := metricstest.Gather(t, reg.Gatherer())
	if n := f.Series("service", "n"); n != 0 {
		t.Errorf("%d series of n, which the rolled back reload added, want none", n)
	}
	if !f.Has("superd_connections_accepted_total", "service", "u") || f.Value(t, "superd_services") != 1 {
		t.Errorf("u's series or superd_services = 1 missing after the rollback")
	}
	if bad := f.Value(t, "superd_reloads_total", "result", "failure"); bad != 1 {
		t.Errorf("reloads{failure} after a rollback = %v, want 1", bad)
	}
}
