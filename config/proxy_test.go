package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestProxyDefaults checks the values Load gives the keys.
func TestProxyDefaults(t *testing.T) {
	cfg, _ := mustLoad(t, svc("proxy_protocol = true\nproxy_from = [\"10.0.0.0/8\", \"127.0.0.1\"]\nreuse_port = true"))
	s := service(t, cfg, "s")
	want := Proxy{Enabled: true, From: mustPrefixes(t, "10.0.0.0/8", "127.0.0.1/32"), Timeout: DefaultProxyTimeout}
	if !s.Proxy.Enabled || !slices.Equal(s.Proxy.From, want.From) || s.Proxy.Timeout != want.Timeout || !s.ReusePort {
		t.Errorf("Proxy %+v ReusePort %v, want %+v and true", s.Proxy, s.ReusePort, want)
	}
	cfg, _ = mustLoad(t, builtinSvc("proxy_protocol = true\nproxy_from = [\"::1\"]\nproxy_timeout = \"500ms\""))
	if s := service(t, cfg, "s"); s.Proxy.Timeout != 500*time.Millisecond || s.ReusePort {
		t.Errorf("built-in: Proxy %+v ReusePort %v", s.Proxy, s.ReusePort)
	}
	cfg, _ = mustLoad(t, svc(""))
	if s := service(t, cfg, "s"); s.Proxy.Enabled || s.ReusePort {
		t.Errorf("default: Proxy %+v ReusePort %v, want both off", s.Proxy, s.ReusePort)
	}
	if !want.Trusted(mustPrefixes(t, "10.1.2.3")[0].Addr()) || want.Trusted(mustPrefixes(t, "192.0.2.1")[0].Addr()) || (Proxy{}).Trusted(mustPrefixes(t, "10.1.2.3")[0].Addr()) {
		t.Errorf("Trusted disagrees with proxy_from")
	}
}

// TestProxyInvalid: each mistake is reported once, at its key.
func TestProxyInvalid(t *testing.T) {
	tests := []struct {
		name, toml, key, want string
	}{
		{"no proxy_from", svc("proxy_protocol = true"), "proxy_protocol", "proxy_protocol needs proxy_from"},
		{"empty proxy_from", svc("proxy_protocol = true\nproxy_from = []"), "proxy_from", "an empty proxy_from would refuse every connection"},
		{"bad proxy_from", svc("proxy_protocol = true\nproxy_from = [\"lb.example\"]"), "proxy_from", `"lb.example" is not an IP address`},
		{"wait", svc("proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\nwait = true"), "proxy_protocol", "proxy_protocol does not work with wait = true"},
		{"udp", svc("proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\nprotocol = \"udp\"\nwait = true"), "proxy_protocol", "proxy_protocol needs a tcp stream service"},
		{"zero timeout", svc("proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\nproxy_timeout = \"0s\""), "proxy_timeout", "proxy_timeout must be longer than zero"},
		{"long timeout", svc("proxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\nproxy_timeout = \"2m\""), "proxy_timeout", "longer than the maximum 1m0s"},
		{"reuse_port not bool", svc("reuse_port = 1"), "reuse_port", "must be true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadText(t, rootOpts(), tt.toml)
			errs := loadErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			if e := errs[0]; !strings.Contains(e.Error(), tt.want) || e.Key != tt.key {
				t.Errorf("got %v (key %q), want %q at key %q", e, e.Key, tt.want, tt.key)
			}
		})
	}
}

// TestProxyWarnings: proxy_from without proxy_protocol does nothing.
func TestProxyWarnings(t *testing.T) {
	cfg, _ := mustLoad(t, svc("proxy_from = [\"127.0.0.1\"]"))
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Error(), "proxy_from has no effect without proxy_protocol = true") {
		t.Errorf("warnings %v, want one about proxy_from", cfg.Warnings)
	}
}
