package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// whoConfig is a service on port that says which superd (who) served it.
func whoConfig(port int, who string, reuse bool) string {
	return fmt.Sprintf(`[services.who]
port = %d
address = "127.0.0.1"
path = "/bin/sh"
user = "root"
args = ["-c", "echo $WHO"]
env = { WHO = %q }
reuse_port = %v
`, port, who, reuse)
}

// TestReusePortTwoDaemons starts two superd processes on one port with
// reuse_port = true: both become ready, and the kernel hands
// connections to each. A third without reuse_port cannot bind.
func TestReusePortTwoDaemons(t *testing.T) {
	port := testkit.FreePort(t, "tcp")
	startDaemon(t, whoConfig(port, "a", true))
	startDaemon(t, whoConfig(port, "b", true))
	seen := map[string]int{}
	// Connections from different source ports hash to either socket;
	// 200 all landing on one is a 2^-199 chance.
	for i := 0; i < 200 && (seen["a"] == 0 || seen["b"] == 0); i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), testkit.Timeout)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(testkit.Timeout))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.TrimSpace(string(b))]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("connections served: %v, want some by each superd", seen)
	}

	third := newDaemon(t, whoConfig(port, "c", false))
	third.start()
	third.waitLog("address already in use")
}

// TestCheckProxy: check shows the PROXY protocol and reuse_port settings,
// and refuses proxy_protocol on a wait service and without proxy_from.
func TestCheckProxy(t *testing.T) {
	requireRoot(t) // user = "nobody"
	out, errOut, status := superdCmd(t, "check", "--config", "testdata/check/proxy.toml")
	if status != 0 {
		t.Errorf("exit status %d, want 0; stderr:\n%s", status, errOut)
	}
	golden(t, "check/proxy.out", out)
	_, errOut, status = superdCmd(t, "check", "--config", "testdata/check/proxy-wait.toml")
	if status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	golden(t, "check/proxy-wait.out", errOut)
}
