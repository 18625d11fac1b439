package config

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// shape1MB is one kind of hostile (or merely huge) input of about a
// megabyte that Load must get through in well under a second and
// 200 MB: the target for `superd check` on any 1 MB input.
type shape1MB struct {
	name string
	toml string
	// perms loads with the ownership checks on, as root: the handler
	// checks walk folders and read ACLs, once per service if nothing is
	// remembered.
	perms bool
	// ok says whether the input is a valid configuration.
	ok bool
	// maxAlloc bounds the bytes Load allocates (see
	// TestLoad1MBAllocations): about one and a half times what it
	// takes, which is below what it took before the double decoding, the
	// per-service handler walks, the copying of [defaults] and the
	// unbounded key count were fixed.
	maxAlloc uint64
}

// shapes1MB lists the inputs. Each is a prefix and then a unit, numbered,
// repeated up to a megabyte or, when that comes first, up to the most
// keys, tables and arrays a file may hold (see maxNodes): the costliest
// input of its kind that Load reads through. Most hold one service and
// many of something (keys, nested keys, array elements, variables); the
// others as many services as fit. One input is refused for holding too
// many keys.
func shapes1MB() []shape1MB {
	return []shape1MB{
		{name: "manykeys", toml: fill(echoSvc, "k%d = 1\n"), maxAlloc: 200 << 20},
		{name: "depth8dotted", toml: fill(echoSvc, "x%d.b.c.d.e.f = 1\n"), maxAlloc: 260 << 20},
		{name: "depth8inline", toml: fill(echoSvc, "e%d = {a={b={c={d={e=1}}}}}\n"), maxAlloc: 260 << 20},
		{name: "depth8short", toml: fill(echoSvc, "e%d={a={b={c={d={e={}}}}}}\n"), maxAlloc: 260 << 20},
		{name: "services", toml: fill("", "[services.s%d]\nbuiltin = \"echo\"\nport = %d\n\n"), ok: true, maxAlloc: 170 << 20},
		{name: "pathservices", toml: fill("", "[services.s%d]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = %d\n\n"), perms: true, ok: true, maxAlloc: 170 << 20},
		{name: "arraytables", toml: fill("", "[[services.a]]\nport = %d\n"), maxAlloc: 100 << 20},
		{name: "arrayinline", toml: fill(echoSvc, "a%d = [{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]\n"), maxAlloc: 110 << 20},
		{name: "longkey", toml: echoSvc + strings.Repeat("k", megabyte) + " = 1\n", maxAlloc: 20 << 20},
		{name: "onlyfrom", toml: echoSvc + "only_from = [" + addresses(megabyte) + "]\n", ok: true, maxAlloc: 50 << 20},
		{name: "widearg", toml: "[services.a]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 7\nargs = [" + strings.Repeat(`"x",`, megabyte/4) + "]\n", ok: true, maxAlloc: 70 << 20},
		{name: "wideenv", toml: "[services.a]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 7\nenv = {" + strings.TrimSuffix(fill("", `A%d="x",`), ",") + "}\n", ok: true, maxAlloc: 180 << 20},
		{name: "envlines", toml: fill("[services.a]\npath = \"/bin/cat\"\nuser = \"nobody\"\nport = 7\n[services.a.env]\n", "A%d = \"x\"\n"), ok: true, maxAlloc: 150 << 20},
		{name: "defaultskeys", toml: "[defaults]\n" + repeatTo(megabyte/2, "k%d = 1\n") + manyServices(megabyte/2/60), maxAlloc: 180 << 20},
		{name: "unknowntables", toml: fill("", "[services.s%d.x]\n"), maxAlloc: 280 << 20},
		{name: "toomany", toml: echoSvc + repeatTo(megabyte, "x%d.b.c.d.e.f = 1\n"), maxAlloc: 20 << 20},
	}
}

// fill is prefix, then unit numbered from 0 (with a second number from
// 10000 when unit has two verbs), repeated while the text stays within a
// megabyte and within maxNodes.
func fill(prefix, unit string) string {
	format := func(i int) string {
		if strings.Count(unit, "%d") == 2 {
			return fmt.Sprintf(unit, i, 10000+i%50000)
		}
		return fmt.Sprintf(unit, i)
	}
	nodes, per := scanNodes(prefix), scanNodes(format(0))
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; ; i++ {
		s := format(i)
		if b.Len()+len(s) > megabyte || nodes+per > maxNodes {
			return b.String()
		}
		b.WriteString(s)
		nodes += per
	}
}

// scanNodes counts the keys, tables and arrays of text as scanLayout
// does.
func scanNodes(text string) int {
	s := &scanner{data: []byte(text), line: 1}
	s.top()
	return s.nodes
}

// opts is how the shape is loaded.
func (sh shape1MB) opts() Options {
	if sh.perms {
		return Options{Euid: 0, Perms: PermsOn}
	}
	return rootOpts()
}

// write writes the shape to a fresh folder, skipping when it needs root.
func (sh shape1MB) write(tb testing.TB) string {
	tb.Helper()
	if sh.perms && os.Geteuid() != 0 {
		tb.Skip("the ownership checks need the files owned by root")
	}
	// The folder must not be writable by others for the checks to pass.
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return writeFile(tb, dir, "services.toml", sh.toml, 0o644)
}

// load loads the shape at path and checks the outcome is the expected
// one.
func (sh shape1MB) load(tb testing.TB, path string) {
	tb.Helper()
	_, err := sh.opts().Load(path)
	if sh.name == "toomany" && !errors.Is(err, errTooMany) {
		tb.Fatalf("Load: %.300v; want %v", err, errTooMany)
	}
	if (err == nil) != sh.ok {
		tb.Fatalf("Load: %.300v; want success %v", err, sh.ok)
	}
}

// BenchmarkLoad1MB loads each 1 MB shape.
func BenchmarkLoad1MB(b *testing.B) {
	for _, sh := range shapes1MB() {
		b.Run(sh.name, func(b *testing.B) {
			path := sh.write(b)
			b.SetBytes(int64(len(sh.toml)))
			for b.Loop() {
				sh.load(b, path)
			}
		})
	}
}

// addresses is a list of distinct IPv4 addresses, n bytes long or a
// little more.
func addresses(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"10.%d.%d.%d"`, i>>16&255, i>>8&255, i&255)
	}
	return b.String()
}

// TestTooManyKeys checks the edge of maxNodes: a file holding exactly
// that many keys, tables and arrays is read, one more is refused with one
// error at the line where the count went over, before the decoder runs.
func TestTooManyKeys(t *testing.T) {
	// Four per line: a.b.c = [ "x" ] holds three key parts and an array.
	const unit = "k%d.b.c = [\"x\"]\n"
	lines := (maxNodes - scanNodes(echoSvc)) / 4
	var b strings.Builder
	b.WriteString(echoSvc)
	for i := range lines {
		fmt.Fprintf(&b, unit, i)
	}
	exact := b.String()
	if n := scanNodes(exact); n != maxNodes {
		t.Fatalf("the test's file holds %d nodes, want %d", n, maxNodes)
	}
	_, _, err := loadText(t, rootOpts(), exact)
	if errors.Is(err, errTooMany) {
		t.Fatalf("a file of exactly %d keys, tables and arrays is refused: %v", maxNodes, err)
	}
	for _, extra := range []string{"z = 1\n", "z = []\n", "z = {}\n", "[z]\n"} {
		_, _, err := loadText(t, rootOpts(), exact+extra)
		errs := loadErrors(t, err)
		want := fmt.Sprintf("services.toml:%d: more than %d keys, tables and arrays: superd reads at most that many from one file (spread the services over files with superd.include)",
			3+lines+1, maxNodes)
		if len(errs) != 1 || !errors.Is(errs[0], errTooMany) || !strings.HasSuffix(errs[0].Error(), want) {
			t.Errorf("adding %q: got %.300v\nwant one error ending in %q", extra, err, want)
		}
	}
}

// TestErrorsAreCapped checks that a file with more than maxErrors
// problems reports the first maxErrors, in line order, then how many
// more there are: a generated file gone wrong must not bury its first
// errors under a hundred thousand others.
func TestErrorsAreCapped(t *testing.T) {
	for _, tt := range []struct {
		extra int
		last  string
	}{
		{1, "... and 1 more error"},
		{57, "... and 57 more errors"},
	} {
		n := maxErrors + tt.extra
		// Services in reverse order of their names, so that the order
		// of discovery (by name) is not the order of lines.
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "[services.s%05d]\nbuiltin = \"echo\"\nport = %d\nprot = 1\n", n-i, 10000+i)
		}
		_, _, err := loadText(t, rootOpts(), b.String())
		errs := loadErrors(t, err)
		if len(errs) != maxErrors+1 {
			t.Fatalf("%d errors: got %d errors, want %d", n, len(errs), maxErrors+1)
		}
		for i, e := range errs[:maxErrors] {
			want := fmt.Sprintf("services.toml:%d: service \"s%05d\": key \"prot\": unknown key (did you mean \"port\"?)", 4*i+4, n-i)
			if !strings.HasSuffix(e.Error(), want) {
				t.Fatalf("error %d: got %q, want it to end with %q", i+1, e, want)
			}
		}
		if got := errs[maxErrors].Error(); got != tt.last {
			t.Errorf("last error: got %q, want %q", got, tt.last)
		}
	}
	// At maxErrors, every error is there and none counts the rest.
	var b strings.Builder
	for i := range maxErrors {
		fmt.Fprintf(&b, "[services.s%05d]\nbuiltin = \"echo\"\nport = %d\nprot = 1\n", i, 10000+i)
	}
	_, _, err := loadText(t, rootOpts(), b.String())
	if errs := loadErrors(t, err); len(errs) != maxErrors || strings.Contains(err.Error(), "more error") {
		t.Errorf("%d errors: got %d, last %v", maxErrors, len(errs), errs[len(errs)-1])
	}
}

// TestDefaultsAreNotCopiedPerService loads [defaults] of n unknown keys
// with n services, then 2n and 2n, and compares the bytes allocated:
// twice as many for a linear Load, four times when each service copies
// every key of [defaults], as it did (a megabyte of that took minutes
// and gigabytes).
func TestDefaultsAreNotCopiedPerService(t *testing.T) {
	text := func(n int) string {
		var b strings.Builder
		b.WriteString("[defaults]\n")
		for i := range n {
			fmt.Fprintf(&b, "k%d = 1\n", i)
		}
		return b.String() + manyServices(n)
	}
	dir := t.TempDir()
	small := writeFile(t, dir, "small.toml", text(1000), 0o644)
	large := writeFile(t, dir, "large.toml", text(2000), 0o644)
	allocated := func(path string) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := rootOpts().Load(path); err == nil {
			t.Fatal("unknown keys in [defaults] loaded without error")
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	allocated(small) // first look-ups of the services database
	s, l := allocated(small), allocated(large)
	if ratio := float64(l) / float64(s); ratio > 2.6 {
		t.Errorf("Load allocated %d bytes for 1000 keys and services, %d for 2000: %.2f times as much, want about 2", s, l, ratio)
	}
}
