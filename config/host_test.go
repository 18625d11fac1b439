package config

import (
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeHost is a Host whose answers the test chooses, counting the
// questions.
type fakeHost struct {
	portStart int
	caps      map[int]bool
	gid       uint32
	groups    []uint32
	asked     map[string]int
}

func (f *fakeHost) host() Host {
	f.asked = map[string]int{}
	return Host{
		UnprivilegedPortStart: func() int { f.asked["port_start"]++; return f.portStart },
		HasCapability: func(c int) bool {
			f.asked["cap"+itoa(c)]++
			return f.caps[c]
		},
		Groups: func() (uint32, []uint32) { f.asked["groups"]++; return f.gid, f.groups },
	}
}

// loadAs loads text as a superd with euid and the fake host.
func loadAs(t *testing.T, euid int, f *fakeHost, text string) (*Config, error) {
	t.Helper()
	dir := configDir(t)
	cfg, err := Options{Euid: euid, Perms: PermsOff, Host: f.host()}.Load(writeFile(t, dir, "services.toml", text, 0o644))
	checkResult(t, cfg, err)
	return cfg, err
}

// oneError checks that err holds one error, at key, containing want;
// want "" means no error.
func oneError(t *testing.T, err error, key, want string) {
	t.Helper()
	errs := loadErrors(t, err)
	switch {
	case want == "" && err != nil:
		t.Fatalf("got %v, want no error", err)
	case want == "":
	case len(errs) != 1:
		t.Fatalf("got %d errors, want 1 containing %q: %v", len(errs), want, err)
	case errs[0].Key != key || !strings.Contains(errs[0].Error(), want):
		t.Errorf("got %v\nwant one at key %q containing %q", errs[0], key, want)
	}
}

func TestPrivilegedPort(t *testing.T) {
	const euid = 4000123
	bind := map[int]bool{unix.CAP_NET_BIND_SERVICE: true}
	tests := []struct {
		name  string
		euid  int
		host  fakeHost
		extra string
		want  string
	}{
		{"low port", euid, fakeHost{portStart: 1024}, "port = 80", "port 80 needs root or CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start is 1024)"},
		{"port by name", euid, fakeHost{portStart: 1024}, `port = "http"`, "port 80 needs root or CAP_NET_BIND_SERVICE"},
		{"udp", euid, fakeHost{portStart: 1024}, "port = 53\nprotocol = \"udp\"\nwait = true", "port 53 needs root or CAP_NET_BIND_SERVICE"},
		{"just below the start", euid, fakeHost{portStart: 8000}, "port = 7999", "port 7999 needs root or CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start is 8000)"},
		{"the start itself", euid, fakeHost{portStart: 1024}, "port = 1024", ""},
		{"every port unprivileged", euid, fakeHost{portStart: 0}, "port = 1", ""},
		{"with CAP_NET_BIND_SERVICE", euid, fakeHost{portStart: 1024, caps: bind}, "port = 80", ""},
		{"disabled", euid, fakeHost{portStart: 1024}, "port = 80\ndisabled = true", ""},
		{"root", 0, fakeHost{portStart: 1024}, "port = 80\nuser = \"nobody\"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAs(t, tt.euid, &tt.host, "[services.s]\npath = \"/bin/cat\"\n"+tt.extra+"\n")
			oneError(t, err, "port", tt.want)
			if tt.euid == 0 && len(tt.host.asked) > 0 {
				t.Errorf("a root superd asked the host %v", tt.host.asked)
			}
		})
	}
}

// TestHostAskedOnce checks that a thousand services cost one look-up
// of each kind.
func TestHostAskedOnce(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		b.WriteString("[services.s" + itoa(i) + "]\npath = \"/bin/cat\"\nport = " + itoa(100+i) +
			"\n[services.u" + itoa(i) + "]\npath = \"/bin/cat\"\nprotocol = \"unix\"\naddress = \"/run/u" + itoa(i) + "\"\nsocket_group = 4000777\n")
	}
	f := &fakeHost{portStart: 1024, caps: map[int]bool{unix.CAP_NET_BIND_SERVICE: true}, gid: 4000123, groups: []uint32{4000777}}
	if _, err := loadAs(t, 4000123, f, b.String()); err != nil {
		t.Fatal(err)
	}
	for q, n := range f.asked {
		if n != 1 {
			t.Errorf("asked %s %d times, want once", q, n)
		}
	}
	if len(f.asked) != 4 {
		t.Errorf("asked %v; want the port start, the two capabilities and the groups", f.asked)
	}
}

func TestRealHost(t *testing.T) {
	if n := realPortStart(); n < 0 || n > 65536 {
		t.Errorf("ip_unprivileged_port_start = %d", n)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Skipf("capget: %v", err)
	}
	want := data[0].Effective&(1<<unix.CAP_NET_BIND_SERVICE) != 0
	if got := realHasCapability(unix.CAP_NET_BIND_SERVICE); got != want {
		t.Errorf("CAP_NET_BIND_SERVICE: %v, capget says %v", got, want)
	}
	if realHasCapability(-1) || realHasCapability(64) {
		t.Error("a capability out of range is reported held")
	}
}

func TestSocketOwner(t *testing.T) {
	nobody := credOf(t, "nobody")
	unixSvc := "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\n"
	tests := []struct {
		name  string
		text  string
		key   string
		want  string // the one error; "" for none
		owner SocketOwner
	}{
		{"none", unixSvc, "", "", SocketOwner{}},
		{"names", unixSvc + "socket_user = \"nobody\"\nsocket_group = \"root\"", "", "", SocketOwner{Uid: nobody.Uid, UidSet: true, Gid: 0, GidSet: true}},
		{"numbers without entries", unixSvc + "socket_user = 4000123\nsocket_group = \"4000777\"", "", "", SocketOwner{Uid: 4000123, UidSet: true, Gid: 4000777, GidSet: true}},
		{"group only", unixSvc + "socket_group = 0", "", "", SocketOwner{GidSet: true}},
		{"root by name", unixSvc + "socket_user = \"root\"", "", "", SocketOwner{UidSet: true}},
		{"unknown user", unixSvc + "socket_user = \"no-such-user-xyz\"", "socket_user", `unknown user "no-such-user-xyz"`, SocketOwner{}},
		{"unknown group", unixSvc + "socket_group = \"no-such-group-xyz\"", "socket_group", `unknown group "no-such-group-xyz"`, SocketOwner{}},
		{"uid out of range", unixSvc + "socket_user = -1", "socket_user", "uid -1 out of range", SocketOwner{}},
		{"wrong type", unixSvc + "socket_group = true", "socket_group", "must be a group name or number, not a boolean", SocketOwner{}},
		{"on tcp", svc(`socket_user = "nobody"`), "socket_user", "socket_user applies only to unix sockets", SocketOwner{}},
		{"group on udp", svc("protocol = \"udp\"\nwait = true\nsocket_group = \"root\""), "socket_group", "socket_group applies only to unix sockets", SocketOwner{}},
		{"from defaults, ignored on tcp", "[defaults]\nsocket_user = \"nobody\"\n" + svc(""), "", "", SocketOwner{}},
		{"from defaults, used on unix", "[defaults]\nsocket_user = \"nobody\"\n" + unixSvc, "", "", SocketOwner{Uid: nobody.Uid, UidSet: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := loadText(t, rootOpts(), tt.text)
			oneError(t, err, tt.key, tt.want)
			if err != nil {
				return
			}
			if got := service(t, cfg, "s").SocketOwner; got != tt.owner {
				t.Errorf("SocketOwner = %+v, want %+v", got, tt.owner)
			}
		})
	}
}

func TestSocketOwnerNotRoot(t *testing.T) {
	const euid = 4000123
	unixSvc := "[services.s]\npath = \"/bin/cat\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\n"
	chown := map[int]bool{unix.CAP_CHOWN: true}
	tests := []struct {
		name  string
		host  fakeHost
		extra string
		key   string
		want  string
	}{
		{"itself", fakeHost{gid: 4000123}, "socket_user = 4000123", "", ""},
		{"another user", fakeHost{gid: 4000123}, "socket_user = \"root\"", "socket_user",
			"superd runs as uid 4000123 and cannot give the socket to user root (uid 0): that needs root or CAP_CHOWN"},
		{"its own group", fakeHost{gid: 4000123}, "socket_group = 4000123", "", ""},
		{"a supplementary group", fakeHost{gid: 4000123, groups: []uint32{4000777}}, "socket_group = 4000777", "", ""},
		{"another group", fakeHost{gid: 4000123, groups: []uint32{4000777}}, "socket_group = \"root\"", "socket_group",
			"superd runs as uid 4000123 and cannot give the socket to group root (gid 0), which is not one of its groups [4000123 4000777]: that needs root or CAP_CHOWN"},
		{"with CAP_CHOWN", fakeHost{gid: 4000123, caps: chown}, "socket_user = 0\nsocket_group = 0", "", ""},
		{"disabled", fakeHost{gid: 4000123}, "socket_user = 0\ndisabled = true", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAs(t, euid, &tt.host, unixSvc+tt.extra+"\n")
			oneError(t, err, tt.key, tt.want)
		})
	}
}

// TestSocketOwnerIsASetting checks that a reload sees a new socket
// owner: the identity stays, the settings differ (supervisor's diff
// compares whole Services).
func TestSocketOwnerIsASetting(t *testing.T) {
	base := "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\n"
	a, _ := mustLoad(t, base+"socket_group = 0\n")
	b, _ := mustLoad(t, base+"socket_group = 4000777\n")
	sa, sb := service(t, a, "s"), service(t, b, "s")
	sb.File = sa.File // each load has its own folder
	if sa.Listen != sb.Listen {
		t.Fatalf("identity changed: %v, %v", sa.Listen, sb.Listen)
	}
	if reflect.DeepEqual(sa, sb) {
		t.Error("services with different socket groups compare equal")
	}
	sb.SocketOwner = sa.SocketOwner
	if !reflect.DeepEqual(sa, sb) {
		t.Errorf("services differ in more than the socket owner:\n%+v\n%+v", sa, sb)
	}
}

func TestChownArgs(t *testing.T) {
	for _, tt := range []struct {
		o        SocketOwner
		uid, gid int
	}{
		{SocketOwner{}, -1, -1},
		{SocketOwner{UidSet: true}, 0, -1},
		{SocketOwner{Gid: 7, GidSet: true}, -1, 7},
		{SocketOwner{Uid: 4000123, UidSet: true, Gid: 0, GidSet: true}, 4000123, 0},
		{SocketOwner{Uid: 9, Gid: 9}, -1, -1}, // ids without their Set flags are unused
	} {
		if uid, gid := tt.o.ChownArgs(); uid != tt.uid || gid != tt.gid {
			t.Errorf("%+v.ChownArgs() = %d, %d; want %d, %d", tt.o, uid, gid, tt.uid, tt.gid)
		}
	}
}
