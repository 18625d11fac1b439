package config

import (
	"strings"
	"testing"
)

// TestMetricsAddress checks the [superd] metrics key: the addresses it
// accepts, in their normalized form, and that a non-loopback one needs
// metrics_allow_remote.
func TestMetricsAddress(t *testing.T) {
	for _, tt := range []struct {
		toml, want string
		remote     bool
	}{
		{"", "", false},
		{`metrics = ""`, "", false},
		{`metrics = "127.0.0.1:9911"`, "127.0.0.1:9911", false},
		{`metrics = "127.3.2.1:0"`, "127.3.2.1:0", false},
		{`metrics = "[::1]:09911"`, "[::1]:9911", false},
		{`metrics = "[::ffff:127.0.0.1]:9911"`, "[::ffff:127.0.0.1]:9911", false},
		{`metrics = "localhost:9911"`, "localhost:9911", false},
		{"metrics = \"0.0.0.0:9911\"\nmetrics_allow_remote = true", "0.0.0.0:9911", true},
		{"metrics = \":9911\"\nmetrics_allow_remote = true", ":9911", true},
		{"metrics = \"[2001:DB8::1]:9911\"\nmetrics_allow_remote = true", "[2001:db8::1]:9911", true},
		{"metrics = \"127.0.0.1:9911\"\nmetrics_allow_remote = false", "127.0.0.1:9911", false},
	} {
		cfg, _ := mustLoad(t, "[superd]\n"+tt.toml+"\n")
		if g := cfg.Global; g.Metrics != tt.want || g.MetricsAllowRemote != tt.remote {
			t.Errorf("%q: Metrics, MetricsAllowRemote = %q, %v; want %q, %v", tt.toml, g.Metrics, g.MetricsAllowRemote, tt.want, tt.remote)
		}
	}
}

// TestMetricsAddressInvalid checks the mistakes: each is one error on
// the metrics key, and a remote address without metrics_allow_remote
// names the key that allows it.
func TestMetricsAddressInvalid(t *testing.T) {
	for _, tt := range []struct{ toml, key, want string }{
		{`metrics = "0.0.0.0:9911"`, "superd.metrics", "0.0.0.0:9911 is not a loopback address: the metrics tell whoever can connect which services run and how busy they are; set metrics_allow_remote = true in [superd]"},
		{`metrics = ":9911"`, "superd.metrics", ":9911 is not a loopback address"},
		{`metrics = "[::]:9911"`, "superd.metrics", "[::]:9911 is not a loopback address"},
		{`metrics = "192.0.2.1:9911"`, "superd.metrics", "192.0.2.1:9911 is not a loopback address"},
		{"metrics_allow_remote = false\nmetrics = \"10.0.0.1:9911\"", "superd.metrics", "10.0.0.1:9911 is not a loopback address"},
		{`metrics = "127.0.0.1"`, "superd.metrics", `metrics address "127.0.0.1" must be host:port, e.g. "127.0.0.1:9911"`},
		{`metrics = "127.0.0.1:http"`, "superd.metrics", `port "http" must be a number from 0 to 65535`},
		{`metrics = "127.0.0.1:70000"`, "superd.metrics", `port "70000" must be a number from 0 to 65535`},
		{`metrics = "metrics.example:9911"`, "superd.metrics", `host "metrics.example" must be an IP address or localhost`},
		{`metrics = 9911`, "superd.metrics", "must be a string, not an integer"},
		{`metrics_allow_remote = "yes"`, "superd.metrics_allow_remote", "must be true or false, not a string"},
		{`metrics_alow_remote = true`, "superd.metrics_alow_remote", `did you mean "metrics_allow_remote"?`},
	} {
		_, _, err := loadText(t, rootOpts(), "[superd]\n"+tt.toml+"\n")
		errs := loadErrors(t, err)
		if len(errs) != 1 {
			t.Errorf("%q: got %d errors, want 1:\n%v", tt.toml, len(errs), err)
			continue
		}
		if e := errs[0]; e.Key != tt.key || e.Line == 0 || !strings.Contains(e.Error(), tt.want) {
			t.Errorf("%q:\n got  %v (key %q, line %d)\nwant key %q and %q", tt.toml, e, e.Key, e.Line, tt.key, tt.want)
		}
	}
}
