package legacy

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// lookupFixed resolves the port names the test data uses, so that the
// goldens do not depend on the host's /etc/services.
func lookupFixed(network, name string) (int, error) {
	ports := map[string]int{"echo": 7, "discard": 9, "daytime": 13, "chargen": 19, "ftp": 21, "time": 37, "smtp": 25,
		"finger": 79, "tftp": 69, "pop3": 110, "imap2": 143, "ident": 113, "submission": 587, "uucp": 540,
		"talk": 517, "ntalk": 518, "cvspserver": 2401, "amanda": 10080, "bootps": 67, "rsync": 873, "telnet": 23}
	if p, ok := ports[name]; ok {
		return p, nil
	}
	return 0, errors.New("unknown port")
}

// convert runs Convert and renders the output and the warnings.
func convert(t *testing.T, opts Options, paths ...string) (out, warnings string) {
	t.Helper()
	if opts.LookupPort == nil {
		opts.LookupPort = lookupFixed
	}
	res, err := Convert(paths, opts)
	if err != nil {
		t.Fatalf("Convert(%q): %v", paths, err)
	}
	var b bytes.Buffer
	if err := res.WriteTOML(&b); err != nil {
		t.Fatal(err)
	}
	var w strings.Builder
	for _, x := range res.Warnings() {
		w.WriteString(x.String() + "\n")
	}
	return b.String(), w.String()
}

// golden compares got with testdata/golden/name, or rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestGolden converts each realistic input and compares what superd
// convert writes, and warns, with the golden files.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		from  Dialect
		paths []string
	}{
		{"openbsd-inetd", Detect, []string{"testdata/inetd/openbsd-inetd.conf"}},
		{"inetutils-inetd", Detect, []string{"testdata/inetd/inetutils-inetd.conf"}},
		{"debian-packages", Detect, []string{"testdata/inetd/debian-packages.conf"}},
		{"inetd-forms", Inetd, []string{"testdata/inetd/forms.conf"}},
		{"debian-xinetd.d", Detect, []string{"testdata/xinetd/debian/xinetd.d"}},
		{"debian-xinetd", Detect, []string{"testdata/xinetd/debian/xinetd.conf"}},
		{"debian-xinetd-files", Detect, []string{
			"testdata/xinetd/debian/xinetd.d/daytime", "testdata/xinetd/debian/xinetd.d/echo",
			"testdata/xinetd/debian/xinetd.d/discard", "testdata/xinetd/debian/xinetd.d/chargen",
			"testdata/xinetd/debian/xinetd.d/time"}},
		{"xinetd-realistic", Detect, []string{"testdata/xinetd/realistic/xinetd.conf"}},
		{"both-dialects", Detect, []string{"testdata/inetd/debian-packages.conf", "testdata/xinetd/debian/xinetd.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, warnings := convert(t, Options{From: tt.from}, tt.paths...)
			golden(t, tt.name+".toml", out)
			golden(t, tt.name+".warnings", warnings)
			checkTOML(t, out)
		})
	}
}

// knownKeys are the service keys of superd.toml(5); a converted service
// uses no other.
func knownKeys() []string {
	return []string{"builtin", "port", "type", "protocol", "address", "socket_mode", "socket_user", "socket_group",
		"wait", "disabled", "user", "group", "path", "args", "argv0", "env", "pass_env", "working_dir", "stderr",
		"instances", "per_source", "rate", "only_from", "no_access", "timeout", "backlog", "umask", "nice", "limits"}
}

// checkTOML parses out as TOML and checks that it holds only service
// tables with superd's keys, each a handler or a built-in, never both.
func checkTOML(t *testing.T, out string) {
	t.Helper()
	var doc map[string]any
	if _, err := toml.Decode(out, &doc); err != nil {
		t.Fatalf("output is not TOML: %v\n%s", err, out)
	}
	for k := range doc {
		if k != "services" {
			t.Errorf("output has a top-level table %q; want services only", k)
		}
	}
	svcs, _ := doc["services"].(map[string]any)
	for name, v := range svcs {
		tab, ok := v.(map[string]any)
		if !ok {
			t.Errorf("services.%s is a %T, not a table", name, v)
			continue
		}
		for k := range tab {
			if !slices.Contains(knownKeys(), k) {
				t.Errorf("service %s: unknown key %q", name, k)
			}
		}
		_, p := tab["path"]
		_, b := tab["builtin"]
		if p == b {
			t.Errorf("service %s: want exactly one of path and builtin: %v", name, tab)
		}
	}
}

// TestDetectDialect checks the content rules, on the real files too.
func TestDetectDialect(t *testing.T) {
	tests := []struct {
		text string
		want Dialect
		ok   bool
	}{
		{"service echo\n{\n}\n", Xinetd, true},
		{"defaults\n{\n}\n", Xinetd, true},
		{"includedir /etc/xinetd.d\n", Xinetd, true},
		{"echo stream tcp nowait root internal\n", Inetd, true},
		{"#<off># echo stream tcp nowait root internal\n", Inetd, true},
		{"127.0.0.1:\n", Inetd, true},
		{"# only comments\n\n", Inetd, false},
		{"", Inetd, false},
		{"hello world\n", Inetd, false},
	}
	for _, tt := range tests {
		d, ok := DetectDialect([]byte(tt.text))
		if d != tt.want || ok != tt.ok {
			t.Errorf("DetectDialect(%q) = %v, %v; want %v, %v", tt.text, d, ok, tt.want, tt.ok)
		}
	}
	for path, want := range map[string]Dialect{
		"testdata/xinetd/debian/xinetd.d/echo":  Xinetd,
		"testdata/xinetd/debian/xinetd.conf":    Xinetd,
		"testdata/inetd/debian-packages.conf":   Inetd,
		"testdata/xinetd/realistic/xinetd.conf": Xinetd,
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := DetectDialect(data); d != want || !ok {
			t.Errorf("DetectDialect(%s) = %v, %v; want %v", path, d, ok, want)
		}
	}
}

// TestConvertErrors checks what makes Convert fail: an input that
// cannot be read, one that is neither dialect, and xinetd text whose
// braces do not enclose entries, each naming file and line.
func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		path string
		from Dialect
		want string
	}{
		{filepath.Join(dir, "missing"), Detect, "cannot read " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{write("prose", "This is not a configuration.\n"), Detect, "prose: neither inetd.conf nor xinetd configuration"},
		{write("nobrace", "service echo\n\ttype = INTERNAL\n"), Detect, "nobrace:1: service echo: '{' must follow, alone on a line"},
		{write("open", "service echo\n{\n\ttype = INTERNAL\n"), Detect, "open:1: service echo is not closed by a line holding only '}'"},
		{write("stray", "defaults\n{\n}\nwait = no\n"), Xinetd, `stray:4: expected service, defaults, include or includedir, not "wait"`},
		{write("inc", "include "+filepath.Join(dir, "nothere")+"\n"), Xinetd, "inc:1: cannot read included file " + filepath.Join(dir, "nothere")},
	}
	for _, tt := range tests {
		_, err := Convert([]string{tt.path}, Options{From: tt.from})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Convert(%s): %v; want an error containing %q", filepath.Base(tt.path), err, tt.want)
		}
	}
	// Every failing input is reported, not just the first.
	_, err := Convert([]string{filepath.Join(dir, "missing"), filepath.Join(dir, "prose")}, Options{})
	if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "prose") {
		t.Errorf("two bad inputs: %v; want both named", err)
	}
	var pe *ParseError
	_, err = Convert([]string{filepath.Join(dir, "prose")}, Options{})
	if !errors.As(err, &pe) || !errors.Is(err, ErrUnknownDialect) {
		t.Errorf("prose: %v; want a *ParseError wrapping ErrUnknownDialect", err)
	}
}

// TestReadOnce checks that a file both named and included is converted
// once: no service appears twice.
func TestReadOnce(t *testing.T) {
	out, _ := convert(t, Options{}, "testdata/xinetd/debian/xinetd.conf", "testdata/xinetd/debian/xinetd.d/echo")
	if n := strings.Count(out, "[services.echo-stream]"); n != 1 {
		t.Errorf("[services.echo-stream] written %d times; want 1\n%s", n, out)
	}
}

// TestNames checks that names stay recognisable and unique.
func TestNames(t *testing.T) {
	mk := func(base, typ, proto, addr string) *Service {
		return &Service{base: base, suffix: [3]string{typ, proto, addr}}
	}
	svcs := []*Service{
		mk("daytime", "stream", "tcp", ""), mk("daytime", "dgram", "udp", ""),
		mk("ftp", "stream", "tcp", ""),
		mk("echo", "stream", "tcp", "127.0.0.1"), mk("echo", "stream", "tcp", "127.0.0.2"),
		mk("time", "stream", "tcp4", ""), mk("time", "stream", "tcp6", ""),
		mk("x", "stream", "tcp", ""), mk("x", "stream", "tcp", ""),
		mk("daytime-stream", "stream", "tcp", ""),
	}
	uniqueNames(svcs)
	var got []string
	for _, s := range svcs {
		got = append(got, s.Name)
	}
	want := []string{"daytime-stream", "daytime-dgram", "ftp", "echo-127.0.0.1", "echo-127.0.0.2",
		"time-tcp4", "time-tcp6", "x", "x-2", "daytime-stream-2"}
	if !slices.Equal(got, want) {
		t.Errorf("names %q; want %q", got, want)
	}
}

// TestXinetdAddr checks the address forms of only_from and no_access.
func TestXinetdAddr(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{"192.0.2.7", []string{"192.0.2.7"}, true},
		{"192.168.1.0", []string{"192.168.1.0/24"}, true},
		{"10.0.0.0", []string{"10.0.0.0/8"}, true},
		{"0.0.0.0", []string{"0.0.0.0/0"}, true},
		{"::", []string{"::/0"}, true},
		{"::1", []string{"::1"}, true},
		{"192.0.2.77/25", []string{"192.0.2.0/25"}, true},
		{"2001:db8::/32", []string{"2001:db8::/32"}, true},
		{"192.168.{1,2}", []string{"192.168.1.0/24", "192.168.2.0/24"}, true},
		{"10.{3}", []string{"10.3.0.0/16"}, true},
		{"{1,2}", []string{"1.0.0.0/8", "2.0.0.0/8"}, true},
		{"192.168.{1,256}", nil, false},
		{"192.168{1}", nil, false},
		{"backup.example.org", nil, false},
		{".example.org", nil, false},
		{"loopback", nil, false},
		{"fe80::1%eth0", nil, false},
	}
	for _, tt := range tests {
		got, ok := xinetdAddr(tt.in)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("xinetdAddr(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzInetd feeds any bytes to the inetd parser: never a panic, and the
// output always parses as TOML.
func FuzzInetd(f *testing.F) {
	addSeeds(f, "testdata/inetd")
	f.Add([]byte("#<off># a:b:c stream tcp nowait.x u:g /p a\n\t\t# c\n \n"))
	f.Add([]byte("[::1]:7 dgram udp6 nowait/1/2/3/4 root internal\n,,:x stream tcp wait r /x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := &Result{Inputs: []Input{{Path: "inetd.conf", Dialect: Inetd}}}
		c := newConverter(Options{LookupPort: lookupFixed})
		c.res = res
		res.Services = parseInetd("inetd.conf", data)
		fuzzCheck(t, c.finish())
	})
}

// FuzzXinetd feeds any bytes to the xinetd parser (includes refused):
// never a panic, and, unless the text cannot be parsed, output that
// parses as TOML.
func FuzzXinetd(f *testing.F) {
	addSeeds(f, "testdata/xinetd")
	f.Add([]byte("defaults\n{\nenabled = a\nonly_from = \n}\nservice a\n{\nonly_from -= 0.0.0.0\nflags = IPv4 IPv6\n}\n"))
	f.Add([]byte("service \x00\xff\n{\n\tenv = A=\x01 =b\n\tserver_args = \"q\\\n}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newConverter(Options{
			LookupPort: lookupFixed,
			ReadFile:   func(string) ([]byte, error) { return nil, fs.ErrPermission },
			ReadDir:    func(string) ([]fs.DirEntry, error) { return nil, fs.ErrPermission },
		})
		if err := c.file("xinetd.conf", data, Xinetd); err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		fuzzCheck(t, c.finish())
	})
}

// addSeeds adds every file under dir.
func addSeeds(f *testing.F, dir string) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		f.Add(data)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
}

// fuzzCheck writes res and parses it back.
func fuzzCheck(t *testing.T, res *Result) {
	var b bytes.Buffer
	if err := res.WriteTOML(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if _, err := toml.Decode(b.String(), &doc); err != nil {
		t.Fatalf("output is not TOML: %v\n%s", err, b.String())
	}
	names := map[string]bool{}
	for _, s := range res.Services {
		if names[s.Name] {
			t.Fatalf("name %q used twice", s.Name)
		}
		names[s.Name] = true
		if svcs, _ := doc["services"].(map[string]any); !s.Skipped && svcs[s.Name] == nil {
			t.Fatalf("service %q missing from the output", s.Name)
		}
	}
}
