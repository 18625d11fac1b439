package config

import (
	"errors"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rootOpts loads as a root superd would, minus the ownership checks, so
// that fixtures load the same whoever checked the repository out. The
// checks have their own tests (perms_test.go).
func rootOpts() Options { return Options{Euid: 0, Perms: PermsOff} }

// writeFile writes text to dir/name, creating folders, and returns the
// path.
func writeFile(t testing.TB, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; the tests need it exact.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// configDir returns a fresh folder holding files that configs refer to
// relatively: "handler" (executable), "notexec" (not) and "nointerp" (a
// script whose interpreter does not exist).
func configDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Handlers run as nobody: nobody must be able to reach them.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, "handler", "#!/bin/sh\nexec cat\n", 0o755)
	writeFile(t, dir, "notexec", "#!/bin/sh\n", 0o644)
	writeFile(t, dir, "nointerp", "#!/nonexistent/interpreter\n", 0o755)
	return dir
}

// loadText writes text as services.toml in a configDir and loads it.
func loadText(t *testing.T, opts Options, text string) (*Config, string, error) {
	t.Helper()
	dir := configDir(t)
	path := writeFile(t, dir, "services.toml", text, 0o644)
	cfg, err := opts.Load(path)
	checkResult(t, cfg, err)
	return cfg, dir, err
}

// mustLoad loads text as root (see rootOpts) and fails on any error.
func mustLoad(t *testing.T, text string) (*Config, string) {
	t.Helper()
	cfg, dir, err := loadText(t, rootOpts(), text)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg, dir
}

// checkResult checks what holds for every Load result: exactly one of
// cfg and err, and err made only of *Error values with a message.
func checkResult(t *testing.T, cfg *Config, err error) {
	t.Helper()
	if (cfg == nil) == (err == nil) {
		t.Fatalf("Load returned cfg=%v and err=%v; want exactly one", cfg != nil, err)
	}
	for _, e := range loadErrors(t, err) {
		if e.Err == nil || e.Err.Error() == "" {
			t.Errorf("error without a message: %#v", e)
		}
	}
}

// loadErrors splits a Load error into its *Error values.
func loadErrors(t *testing.T, err error) []*Error {
	t.Helper()
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Load error %T is not an errors.Join: %v", err, err)
	}
	var out []*Error
	for _, e := range j.Unwrap() {
		ce, ok := e.(*Error)
		if !ok {
			t.Fatalf("Load error element %T is not *Error: %v", e, e)
		}
		out = append(out, ce)
	}
	return out
}

// service returns the named service of cfg.
func service(t *testing.T, cfg *Config, name string) *Service {
	t.Helper()
	for _, s := range cfg.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %q in %d services", name, len(cfg.Services))
	return nil
}

// credOf is the Cred Load should produce for the named user with its
// primary group.
func credOf(t *testing.T, name string) Cred {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("this test needs user %q: %v", name, err)
	}
	acct, err := fromUser(u)
	if err != nil {
		t.Fatal(err)
	}
	return Cred{Set: true, User: acct.name, Uid: acct.uid, Gid: acct.gid, Groups: acct.groups,
		Home: acct.home, Shell: acct.shell}
}

func TestLoadValidFixture(t *testing.T) {
	cfg, err := rootOpts().Load("testdata/valid.toml")
	checkResult(t, cfg, err)
	if err != nil {
		t.Fatal(err)
	}
	wantGlobal := Global{Log: "stderr", SyslogFacility: "local3", SyslogTag: "superd-test",
		ShutdownGrace: 3 * time.Second, UpgradeTimeout: 30 * time.Second, Files: []string{"testdata/valid.toml"}}
	if !reflect.DeepEqual(cfg.Global, wantGlobal) {
		t.Errorf("Global = %+v, want %+v", cfg.Global, wantGlobal)
	}
	var names []string
	for _, s := range cfg.Services {
		names = append(names, s.Name)
	}
	if want := []string{"echo", "echo-udp", "hello", "local", "off", "tftp"}; !slices.Equal(names, want) {
		t.Errorf("services = %v, want %v (sorted by name)", names, want)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	nogroup, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skipf("this test needs group nogroup: %v", err)
	}
	checkHello(t, service(t, cfg, "hello"), nogroup)
}

// checkHello compares every field of the service that sets every key.
func checkHello(t *testing.T, got *Service, nogroup *user.Group) {
	t.Helper()
	cred := credOf(t, "nobody")
	gid, _ := parseID(nogroup.Gid)
	cred.Gid = gid
	cred.Groups = sortedIDs(append(slices.Clone(cred.Groups), gid))
	want := &Service{
		Name: "hello", File: "testdata/valid.toml",
		Listen: ListenKey{"tcp", "127.0.0.1:7100"}, Backlog: 128,
		Exec: Exec{
			Path: "/bin/cat", Argv: []string{"hello", "-u"}, Env: []string{"B=2", "LANG=C.UTF-8"},
			PassEnv: []string{"TZ"}, Dir: "/tmp", Stderr: "null", Cred: cred, Umask: 0o027,
			Nice: 10, SetNice: true,
			Rlimits: []Rlimit{
				{"as", unix.RLIMIT_AS, 512 << 20}, {"core", unix.RLIMIT_CORE, 0},
				{"cpu", unix.RLIMIT_CPU, 60}, {"fsize", unix.RLIMIT_FSIZE, 1 << 30},
				{"nofile", unix.RLIMIT_NOFILE, 1024}, {"nproc", unix.RLIMIT_NPROC, 64},
			},
		},
		Limits: Limits{Instances: 10, PerSource: 2, Rate: 2.5, Timeout: 30 * time.Second},
		Access: Access{
			OnlyFrom: mustPrefixes(t, "127.0.0.0/8", "::1/128"),
			NoAccess: mustPrefixes(t, "127.0.0.7/32"),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hello:\n got %+v\nwant %+v", got, want)
	}
}

func mustPrefixes(t *testing.T, list ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestDefaults(t *testing.T) {
	nobody := credOf(t, "nobody")
	tests := []struct {
		name string
		toml string
		want func(dir string) *Service
	}{
		{"builtin tcp", "[services.s]\nbuiltin = \"echo\"\nport = 7\n", func(dir string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"builtin udp is not wait", "[services.s]\nbuiltin = \"chargen\"\nport = 19\nprotocol = \"udp\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"udp", ":19"}, Builtin: "chargen", Limits: Limits{Instances: 256}}
		}},
		{"handler, relative path", "[services.s]\npath = \"handler\"\nport = 7\nuser = \"nobody\"\n", func(dir string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Limits: Limits{Instances: 256}, Exec: Exec{
				Path: filepath.Join(dir, "handler"), Argv: []string{"handler"}, Dir: "/", Stderr: "log",
				Umask: -1, Cred: nobody}}
		}},
		{"type dgram means udp and wait", "[services.s]\npath = \"/bin/cat\"\nport = 7\ntype = \"dgram\"\nuser = \"nobody\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"udp", ":7"}, Wait: true, Limits: Limits{Instances: 256}, Exec: Exec{
				Path: "/bin/cat", Argv: []string{"cat"}, Dir: "/", Stderr: "log", Umask: -1, Cred: nobody}}
		}},
		{"tcp4 and tcp6 wildcards", "[services.s]\nbuiltin = \"echo\"\nport = 7\nprotocol = \"tcp6\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"tcp6", "[::]:7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"udp4 wildcard", "[services.s]\nbuiltin = \"echo\"\nport = 7\nprotocol = \"udp4\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"udp4", "0.0.0.0:7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"IPv6 address with zone", "[services.s]\nbuiltin = \"echo\"\nport = 7\naddress = \"fe80::1%lo\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"tcp", "[fe80::1%lo]:7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"0.0.0.0 on tcp is every address", "[services.s]\nbuiltin = \"echo\"\nport = 7\naddress = \"0.0.0.0\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"unix dgram", "[services.s]\nprotocol = \"unix\"\ntype = \"dgram\"\naddress = \"/run/x/../s.sock\"\nsocket_mode = \"0600\"\npath = \"/bin/cat\"\nuser = \"nobody\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"unixgram", "/run/s.sock"}, SocketMode: 0o600, Wait: true,
				Limits: Limits{Instances: 256}, Exec: Exec{Path: "/bin/cat", Argv: []string{"cat"}, Dir: "/",
					Stderr: "log", Umask: -1, Cred: nobody}}
		}},
		{"disabled needs no user as root", "[services.s]\ndisabled = true\npath = \"/bin/cat\"\nport = 7\n", func(string) *Service {
			return &Service{Disabled: true, Listen: ListenKey{"tcp", ":7"}, Limits: Limits{Instances: 256}, Exec: Exec{
				Path: "/bin/cat", Argv: []string{"cat"}, Dir: "/", Stderr: "log", Umask: -1}}
		}},
		{"[defaults] fills what the service leaves out", "[defaults]\nuser = \"nobody\"\ninstances = 3\nstderr = \"socket\"\nargs = [\"-x\"]\n[services.s]\npath = \"/bin/cat\"\nport = 7\nstderr = \"null\"\n", func(string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Limits: Limits{Instances: 3}, Exec: Exec{
				Path: "/bin/cat", Argv: []string{"cat", "-x"}, Dir: "/", Stderr: "null", Umask: -1, Cred: nobody}}
		}},
		{"[defaults] keys that do not apply are ignored", "[defaults]\npath = \"/bin/cat\"\nsocket_mode = \"0600\"\nwait = true\nuser = \"nobody\"\n[services.s]\nbuiltin = \"echo\"\nport = 7\n", func(string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Builtin: "echo", Limits: Limits{Instances: 256}}
		}},
		{"[defaults] path, service picks it up", "[defaults]\npath = \"handler\"\nuser = \"nobody\"\n[services.s]\nport = 7\n", func(dir string) *Service {
			return &Service{Listen: ListenKey{"tcp", ":7"}, Limits: Limits{Instances: 256}, Exec: Exec{
				Path: filepath.Join(dir, "handler"), Argv: []string{"handler"}, Dir: "/", Stderr: "log", Umask: -1, Cred: nobody}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, dir := mustLoad(t, tt.toml)
			want := tt.want(dir)
			want.Name, want.File = "s", filepath.Join(dir, "services.toml")
			if got := service(t, cfg, "s"); !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestGlobalDefaults(t *testing.T) {
	cfg, dir := mustLoad(t, "")
	want := Global{Log: "syslog", SyslogFacility: "daemon", SyslogTag: "superd",
		ShutdownGrace: 10 * time.Second, UpgradeTimeout: 30 * time.Second, Files: []string{filepath.Join(dir, "services.toml")}}
	if !reflect.DeepEqual(cfg.Global, want) {
		t.Errorf("Global = %+v, want %+v", cfg.Global, want)
	}
	if len(cfg.Services) != 0 {
		t.Errorf("services = %v, want none", cfg.Services)
	}
}

// TestDurationMaximums checks that each duration cap is itself accepted:
// the caps are documented, so a configuration may use them exactly.
func TestDurationMaximums(t *testing.T) {
	cfg, _ := mustLoad(t, "[superd]\nshutdown_grace = \"1h\"\n"+builtinSvc(`timeout = "8760h"`))
	if got := cfg.Global.ShutdownGrace; got != MaxShutdownGrace {
		t.Errorf("ShutdownGrace = %v, want %v", got, MaxShutdownGrace)
	}
	if got := service(t, cfg, "s").Limits.Timeout; got != MaxTimeout {
		t.Errorf("Timeout = %v, want %v", got, MaxTimeout)
	}
}

func TestIncludes(t *testing.T) {
	cfg, err := rootOpts().Load("testdata/include/main.toml")
	checkResult(t, cfg, err)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{
		"testdata/include/main.toml",
		"testdata/include/services.d/a.toml",
		"testdata/include/services.d/b.toml",
		"testdata/include/extra.toml",
	}
	if !slices.Equal(cfg.Global.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", cfg.Global.Files, wantFiles)
	}
	abs, err := filepath.Abs("testdata/include/handler.sh")
	if err != nil {
		t.Fatal(err)
	}
	a := service(t, cfg, "a")
	if a.File != wantFiles[1] || a.Exec.Path != abs || a.Exec.Cred.User != "nobody" {
		t.Errorf("a: File %q, Path %q, User %q; want %q, %q, nobody (from the main file's [defaults])",
			a.File, a.Exec.Path, a.Exec.Cred.User, wantFiles[1], abs)
	}
	if c := service(t, cfg, "c"); c.Listen != (ListenKey{"udp", ":7104"}) || c.File != wantFiles[3] {
		t.Errorf("c: %v in %s", c.Listen, c.File)
	}
}

func TestIncludeAbsoluteGlob(t *testing.T) {
	inc := t.TempDir()
	writeFile(t, inc, "x.toml", "[services.x]\nbuiltin = \"echo\"\nport = 7\n", 0o644)
	cfg, _ := mustLoad(t, "[superd]\ninclude = [\""+inc+"/*.toml\"]\n")
	if s := service(t, cfg, "x"); s.File != filepath.Join(inc, "x.toml") {
		t.Errorf("File = %q", s.File)
	}
}

func TestDuplicateAcrossFiles(t *testing.T) {
	cfg, err := rootOpts().Load("testdata/dup/main.toml")
	checkResult(t, cfg, err)
	errs := loadErrors(t, err)
	if len(errs) != 1 {
		t.Fatalf("got %d errors, want 1: %v", len(errs), err)
	}
	want := `testdata/dup/conf.d/echo.toml:1: service "echo": defined twice: in testdata/dup/main.toml and in testdata/dup/conf.d/echo.toml`
	if got := errs[0].Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestIncludedFileMayOnlyHoldServices(t *testing.T) {
	dir := configDir(t)
	writeFile(t, dir, "d/x.toml", "[defaults]\nuser = \"root\"\n[superd]\nlog = \"stderr\"\n", 0o644)
	path := writeFile(t, dir, "services.toml", "[superd]\ninclude = [\"d/*.toml\"]\n", 0o644)
	_, err := rootOpts().Load(path)
	errs := loadErrors(t, err)
	if len(errs) != 2 {
		t.Fatalf("got %d errors, want 2: %v", len(errs), err)
	}
	for _, e := range errs {
		if !strings.Contains(e.Error(), "belongs in the main file") || e.File != filepath.Join(dir, "d/x.toml") {
			t.Errorf("got %v", e)
		}
	}
}

func TestPortNames(t *testing.T) {
	if _, err := os.Stat("/etc/services"); err != nil {
		t.Skipf("no /etc/services: %v", err)
	}
	cfg, _ := mustLoad(t, `
[services.finger]
builtin = "echo"
port = "finger"
[services.dns]
builtin = "echo"
port = "domain"
protocol = "udp"
[services.digits]
builtin = "echo"
port = "8080"
`)
	for name, want := range map[string]ListenKey{
		"finger": {"tcp", ":79"},
		"dns":    {"udp", ":53"},
		"digits": {"tcp", ":8080"},
	} {
		if got := service(t, cfg, name).Listen; got != want {
			t.Errorf("%s: Listen = %v, want %v", name, got, want)
		}
	}
}

func TestNumericUser(t *testing.T) {
	nobody := credOf(t, "nobody")
	for _, v := range []string{`"65534"`, `65534`} {
		cfg, _ := mustLoad(t, "[services.s]\npath = \"/bin/cat\"\nport = 7\nuser = "+v+"\n")
		if got := service(t, cfg, "s").Exec.Cred; !reflect.DeepEqual(got, nobody) {
			t.Errorf("user = %s: Cred = %+v, want %+v", v, got, nobody)
		}
	}
}

func TestNumericUserWithoutEntry(t *testing.T) {
	const uid = 4000123
	if _, err := user.LookupId("4000123"); err == nil {
		t.Skip("uid 4000123 exists here")
	}
	cfg, _ := mustLoad(t, "[services.s]\npath = \"/bin/cat\"\nport = 7\nuser = \"4000123\"\ngroup = 4000124\n")
	want := Cred{Set: true, User: "4000123", Uid: uid, Gid: 4000124, Groups: []uint32{4000124}, Home: "/", Shell: "/bin/sh"}
	if got := service(t, cfg, "s").Exec.Cred; !reflect.DeepEqual(got, want) {
		t.Errorf("Cred = %+v, want %+v", got, want)
	}
}

func TestSupplementaryGroups(t *testing.T) {
	root := credOf(t, "root")
	cfg, _ := mustLoad(t, "[services.s]\npath = \"/bin/cat\"\nport = 7\nuser = \"root\"\ngroup = \"nogroup\"\n")
	got := service(t, cfg, "s").Exec.Cred
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Skip(err)
	}
	gid, _ := parseID(g.Gid)
	// As initgroups(root, nogroup): root's passwd group 0 is replaced by
	// the chosen group; groups listing root stay.
	others := slices.DeleteFunc(slices.Clone(root.Groups), func(g uint32) bool { return g == root.Gid })
	want := sortedIDs(append(others, gid))
	if got.Gid != gid || !slices.Equal(got.Groups, want) {
		t.Errorf("Gid %d, Groups %v; want %d, %v (the user's other groups plus the chosen one)", got.Gid, got.Groups, gid, want)
	}
}

func TestNotRoot(t *testing.T) {
	nobody := credOf(t, "nobody")
	as := Options{Euid: int(nobody.Uid)}
	cfg, _, err := loadText(t, as, "[services.s]\npath = \"/bin/cat\"\nport = 7000\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := service(t, cfg, "s").Exec.Cred; got.Set {
		t.Errorf("no user, not root: Cred = %+v, want Set false (run as self)", got)
	}
	cfg, _, err = loadText(t, as, "[services.s]\npath = \"/bin/cat\"\nport = 7000\nuser = \"nobody\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := service(t, cfg, "s").Exec.Cred; !reflect.DeepEqual(got, nobody) {
		t.Errorf("own user: Cred = %+v, want %+v", got, nobody)
	}
}

func TestSocketConflicts(t *testing.T) {
	tests := []struct {
		a, b string // protocol and address settings of two services on one port
		ok   bool
	}{
		{`protocol = "tcp"`, `protocol = "udp"`, true},
		{`protocol = "tcp4"`, `protocol = "tcp6"`, true},
		{`address = "127.0.0.1"`, `address = "127.0.0.2"`, true},
		{`address = "127.0.0.1"`, `address = "::1"`, true},
		{`protocol = "tcp"`, `protocol = "tcp4"`, false},
		{`protocol = "tcp"`, `protocol = "tcp6"`, false},
		{`protocol = "tcp"`, `address = "127.0.0.1"`, false},
		{`protocol = "tcp4"`, `address = "127.0.0.1"`, false},
		{`protocol = "tcp6"`, `address = "::1"`, false},
		{`protocol = "tcp6"`, `address = "127.0.0.1"`, true},
		{`address = "::"`, `address = "0.0.0.0"`, false},
		{`protocol = "udp"`, `protocol = "udp4"`, false},
	}
	for _, tt := range tests {
		text := "[services.a]\nbuiltin = \"echo\"\nport = 7\n" + tt.a + "\n[services.b]\nbuiltin = \"echo\"\nport = 7\n" + tt.b + "\n"
		_, _, err := loadText(t, rootOpts(), text)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s / %s: %v", tt.a, tt.b, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), `service "a" (`)):
			t.Errorf("%s / %s: got %v, want a conflict with service a", tt.a, tt.b, err)
		}
	}
}

func TestDisabledServicesMayShareASocket(t *testing.T) {
	mustLoad(t, "[services.a]\nbuiltin = \"echo\"\nport = 7\n[services.b]\nbuiltin = \"echo\"\nport = 7\ndisabled = true\n")
}

func TestWarnings(t *testing.T) {
	tests := []struct{ toml, key, want string }{
		{"[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 69\nprotocol = \"udp\"\nonly_from = [\"10.0.0.0/8\"]\n",
			"only_from", "has no effect on a wait service"},
		{"[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 69\nprotocol = \"udp\"\nper_source = 3\n",
			"per_source", "has no effect on a wait service"},
		{"[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\nno_access = [\"10.0.0.1\"]\n",
			"no_access", "has no effect on a unix socket"},
	}
	for _, tt := range tests {
		cfg, _ := mustLoad(t, tt.toml)
		if len(cfg.Warnings) != 1 || cfg.Warnings[0].Key != tt.key || !strings.Contains(cfg.Warnings[0].Error(), tt.want) {
			t.Errorf("%s: warnings %v, want one on %s containing %q", tt.toml, cfg.Warnings, tt.key, tt.want)
		}
	}
	cfg, _ := mustLoad(t, "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 69\nprotocol = \"udp\"\nper_source = 0\n")
	if len(cfg.Warnings) != 0 {
		t.Errorf("per_source = 0 (none): warnings %v, want none", cfg.Warnings)
	}
}

func TestThreeErrorsAtOnce(t *testing.T) {
	_, err := rootOpts().Load("testdata/three_errors.toml")
	errs := loadErrors(t, err)
	want := []string{
		`testdata/three_errors.toml:3: key "superd.log": log "file" is not one of syslog, stderr or journal`,
		`testdata/three_errors.toml:7: service "a": key "port": port 70000 out of range 1..65535`,
		`testdata/three_errors.toml:12: service "b": key "protocl": unknown key (did you mean "protocol"?)`,
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSyntaxErrorLine(t *testing.T) {
	_, _, err := loadText(t, rootOpts(), "[services.a]\nbuiltin = \"echo\"\nport = = 7\n")
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || !strings.Contains(e.Error(), "toml syntax error") {
		t.Fatalf("got %v, want a syntax error on line 3", err)
	}
	if !strings.Contains(e.Error(), "services.toml:3: ") {
		t.Errorf("message %q does not start with file:line", e.Error())
	}
}

func TestMissingFile(t *testing.T) {
	_, err := rootOpts().Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml: cannot open: no such file") {
		t.Errorf("got %v", err)
	}
}

func TestLoadUsesOwnEuid(t *testing.T) {
	// Built-ins only, on a port anyone may bind: valid whether or not
	// the test runs as root.
	dir := t.TempDir()
	path := writeFile(t, dir, "services.toml", "[services.e]\nbuiltin = \"echo\"\nport = 7000\n", 0o644)
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestLoginShell(t *testing.T) {
	data, err := os.ReadFile(passwdFile)
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == "root" && f[6] != "" {
			if got := loginShell("root"); got != f[6] {
				t.Errorf("loginShell(root) = %q, want %q", got, f[6])
			}
			return
		}
	}
	t.Skip("no root line with a shell in " + passwdFile)
}
