package socket

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPeerEnv(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name   string
		p      Peer
		want   []string
		remote string
	}{
		{
			name: "tcp4",
			p:    Peer{Proto: "TCP", Local: ap("127.0.0.1:79"), Remote: ap("127.0.0.2:5555")},
			want: []string{"PROTO=TCP", "TCPLOCALIP=127.0.0.1", "TCPLOCALPORT=79",
				"TCPREMOTEIP=127.0.0.2", "TCPREMOTEPORT=5555", "REMOTE_ADDR=127.0.0.2", "REMOTE_PORT=5555"},
			remote: "127.0.0.2:5555",
		},
		{
			name: "tcp6",
			p:    Peer{Proto: "TCP", Local: ap("[::1]:8080"), Remote: ap("[2001:db8::7]:40000")},
			want: []string{"PROTO=TCP", "TCPLOCALIP=::1", "TCPLOCALPORT=8080",
				"TCPREMOTEIP=2001:db8::7", "TCPREMOTEPORT=40000", "REMOTE_ADDR=2001:db8::7", "REMOTE_PORT=40000"},
			remote: "[2001:db8::7]:40000",
		},
		{
			name:   "unix with credentials",
			p:      Peer{Proto: "UNIX", Cred: &unix.Ucred{Pid: 42, Uid: 1000, Gid: 100}},
			want:   []string{"PROTO=UNIX", "UNIXREMOTEEUID=1000", "UNIXREMOTEEGID=100", "UNIXREMOTEPID=42"},
			remote: "pid:42",
		},
		{
			name:   "unix without credentials",
			p:      Peer{Proto: "UNIX"},
			want:   []string{"PROTO=UNIX"},
			remote: "unix",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Env(); !slices.Equal(got, tt.want) {
				t.Errorf("Env() = %q, want %q", got, tt.want)
			}
			if got := tt.p.String(); got != tt.remote {
				t.Errorf("String() = %q, want %q", got, tt.remote)
			}
		})
	}
}

func TestAddrPort(t *testing.T) {
	v6 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	tests := []struct {
		name string
		sa   syscall.Sockaddr
		want string
		ok   bool
	}{
		{"ipv4", &syscall.SockaddrInet4{Port: 79, Addr: [4]byte{192, 0, 2, 1}}, "192.0.2.1:79", true},
		{"ipv6", &syscall.SockaddrInet6{Port: 443, Addr: v6("2001:db8::1")}, "[2001:db8::1]:443", true},
		{"ipv6 loopback", &syscall.SockaddrInet6{Port: 1, Addr: v6("::1")}, "[::1]:1", true},
		{"ipv4-mapped becomes ipv4", &syscall.SockaddrInet6{Port: 22, Addr: v6("::ffff:192.0.2.1")}, "192.0.2.1:22", true},
		{"ipv4-mapped drops a zone", &syscall.SockaddrInet6{Port: 22, Addr: v6("::ffff:192.0.2.1"), ZoneId: 3}, "192.0.2.1:22", true},
		{"link-local keeps its zone", &syscall.SockaddrInet6{Port: 22, Addr: v6("fe80::1"), ZoneId: 2}, "[fe80::1%2]:22", true},
		{"unix", &syscall.SockaddrUnix{Name: "/run/x.sock"}, "invalid AddrPort", false},
		{"nil", nil, "invalid AddrPort", false},
	}
	for _, tt := range tests {
		got, ok := addrPort(tt.sa)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("%s: addrPort = %s, %v; want %s, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
