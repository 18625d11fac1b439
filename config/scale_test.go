package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// megabyte is the size of the hostile inputs: far larger than any real
// configuration, and large enough that a cost growing with the square of
// the size shows.
const megabyte = 1 << 20

// repeatTo repeats unit (numbered with %d when it has a verb) until the
// result reaches n bytes.
func repeatTo(n int, unit string) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		if strings.Contains(unit, "%d") {
			fmt.Fprintf(&b, unit, i)
		} else {
			b.WriteString(unit)
		}
	}
	return b.String()
}

// echoSvc is the start of a valid built-in service, three lines long.
const echoSvc = "[services.a]\nbuiltin = \"echo\"\nport = 7\n"

// TestHostileNestingIsRefused generates each deeply nested shape at about
// a megabyte and checks that Load refuses it with one error at the line
// where the nesting goes too deep. Before scanLayout each of them took
// the decoder minutes and gigabytes; the time is not asserted here (a
// slow machine must not fail), BenchmarkHostileNesting measures it.
func TestHostileNestingIsRefused(t *testing.T) {
	for _, tt := range hostileNesting() {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadText(t, rootOpts(), tt.toml)
			errs := loadErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %.300v", len(errs), err)
			}
			e := errs[0]
			if !errors.Is(e, errTooDeep) || e.Line != tt.line {
				t.Errorf("got  %v\nwant line %d: %v", e, tt.line, errTooDeep)
			}
			want := fmt.Sprintf("services.toml:%d: nesting deeper than 8 levels: superd's configuration never nests that deep", tt.line)
			if !strings.HasSuffix(e.Error(), want) {
				t.Errorf("got  %q\nwant it to end with %q", e.Error(), want)
			}
		})
	}
}

// hostileNesting lists the nested shapes, about a megabyte each, with the
// line where each goes too deep.
func hostileNesting() []struct {
	name, toml string
	line       int
} {
	parts := repeatTo(megabyte, ".x%d")
	return []struct {
		name, toml string
		line       int
	}{
		{"table header", "[services.a" + parts + "]\n", 1},
		{"table header after other lines", "# comment\n\n[services.a" + parts + "]\n", 3},
		{"array of tables header", "[[services.a" + parts + "]]\n", 1},
		{"dotted key", echoSvc + "x" + parts + " = 1\n", 4},
		{"inline tables", echoSvc + "env = " + strings.Repeat("{a=", megabyte/3) + `"x"` + strings.Repeat("}", megabyte/3) + "\n", 4},
		{"arrays", echoSvc + "args = " + strings.Repeat("[", megabyte/2) + strings.Repeat("]", megabyte/2) + "\n", 4},
		{"arrays of inline tables", echoSvc + "args = " + strings.Repeat("[{a=", megabyte/5) + strings.Repeat("}]", megabyte/5) + "\n", 4},
		{"arrays over lines", echoSvc + "args = " + strings.Repeat("[\n", megabyte/4) + strings.Repeat("]\n", megabyte/4), 9},
		{"inline tables over lines", echoSvc + "env = " + strings.Repeat("{\na=", megabyte/4) + "1" + strings.Repeat("}", megabyte/4) + "\n", 10},
		{"nesting behind a valid service", strings.Repeat(echoSvc, 1) + "[services.b]\nenv = {a={a={a={a={a={a=1}}}}}}\n", 5},
	}
}

// TestNestingLimit checks the edge of maxDepth: a key path of 8 loads (as
// far as nesting goes), 9 does not, and brackets, braces and dots inside
// strings and comments do not count.
func TestNestingLimit(t *testing.T) {
	tests := []struct {
		name, toml string
		deep       bool
	}{
		{"env at depth 8", echoSvc + `env = {a={a={a={a={a="x"}}}}}`, false},
		{"env at depth 9", echoSvc + `env = {a={a={a={a={a={a="x"}}}}}}`, true},
		{"arrays at depth 8", echoSvc + `args = [[[[["x"]]]]]`, false},
		{"arrays at depth 9", echoSvc + `args = [[[[[["x"]]]]]]`, true},
		{"header at depth 8", "[services.a.b.c.d.e.f.g]\n", false},
		{"header at depth 9", "[services.a.b.c.d.e.f.g.h]\n", true},
		{"dotted key at depth 8", echoSvc + "b.c.d.e.f.g = 1", false},
		{"dotted key at depth 9", echoSvc + "b.c.d.e.f.g.h = 1", true},
		{"quoted dots", "[services.\"a.b.c.d.e.f.g.h.i.j\"]\nbuiltin = \"echo\"\nport = 7\n", false},
		{"brackets in strings and comments", echoSvc + "args = [\"[[[[[[[[[[\", '{{{{{{{{{{', \"\"\"\n[[[[[[[[[[\"\"\"] # [[[[[[[[[[\n# {{{{{{{{{{", false},
		{"escaped quote", echoSvc + `args = ["\"[[[[[[[[[[", "x"]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadText(t, rootOpts(), tt.toml)
			if got := errors.Is(err, errTooDeep); got != tt.deep {
				t.Errorf("refused as too deep: %v, want %v (%v)", got, tt.deep, err)
			}
		})
	}
}

// TestLayoutMatchesDecoder checks scanLayout against the decoder on the
// fixtures and on the corners of TOML: it must find every key toml's
// MetaData.Keys lists, at the line the decoder itself reports.
func TestLayoutMatchesDecoder(t *testing.T) {
	for name, data := range layoutSeeds(t) {
		t.Run(name, func(t *testing.T) {
			if !checkLayout(t, data) {
				t.Fatal("the decoder rejects this seed, which then tests nothing")
			}
		})
	}
}

// FuzzLayout checks scanLayout against the decoder on any input the
// decoder accepts.
func FuzzLayout(f *testing.F) {
	for _, data := range layoutSeeds(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkLayout(t, data) })
}

// layoutSeeds returns the fixtures and TOML's corners, by name.
func layoutSeeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	seeds := map[string][]byte{}
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".toml" {
			return err
		}
		data, err := os.ReadFile(path)
		seeds[path] = data
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	for i, s := range []string{
		"a = 1\nb = 'x' # c\n[t]\nc = \"\"\"\nx\n\"\"\"\nd = 2\n",
		"[t]\nd = 1979-05-27 07:32:00\ne = {x = 1979-05-27 07:32:00, y = 2}\n",
		"[\"a.b\".'c]d'.e]\nx = 1\n",
		"[[aot]]\nx = 1\n[[aot]]\nx = 2\n[aot.sub]\ny = 3\n",
		"a = [\n  1, # c\n  [2, 3],\n  {x = 1, y = [{z = 1}]},\n]\n",
		"t = {\n  a = 1,\n  b = { c = 2 }, # c\n}\n",
		"\xef\xbb\xbfa = 1\n[b]\nc = 2\n",
		"a = 1\r\n[b]\r\nc = '''\r\nx'''\r\n",
		"s = \"\"\"a\"\"\"\"\"\nt = 1\n",
		"s = '''a'''''\nt = [1]\n",
		"s = \"\\\"[{\"\nt = { u = \"}\" }\n",
		"a.b.c = 1\na.d = 2\n[x.y]\nz.w = 1\n",
		"\"\" = 1\n",
		"k = \"\"\"\\\n  x\"\"\"\nl = 1\n",
		"t = { a.b = 1, c = 2 }\n",
		"arr = [ [ { a = [ { b = 1 } ] } ] ]\n",
		"[a]\n[a.b]\n[a.b.c]\n",
		"x = [] # ]\ny = {} # }\n",
		"a = -inf\nb = nan\nc = 0x1F\nd = 1e+3\ne = true\nf = 07:32:00\n",
		"  [ a . b ]  # c\n  k . j = 1\n",
		"[services.s]\nenv = { \"A.B\" = 'x', C = \"}\" }\nargs = [\"#\", '[', \"\"\"]\n\"\"\"]\n",
	} {
		seeds[fmt.Sprintf("corner %d", i)] = []byte(s)
	}
	return seeds
}

// checkLayout compares scanLayout with the decoder on data, and reports
// whether it could: data the decoder rejects, or the scan finds too
// deep, proves nothing here.
func checkLayout(t *testing.T, data []byte) bool {
	t.Helper()
	lay := scanLayout(data)
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return false
	}
	if lay.deep > 0 {
		var v map[string]any
		if _, err := toml.Decode(string(data), &v); err == nil {
			if d := decodedDepth(v, 0); d <= maxDepth {
				t.Errorf("scan refuses line %d as too deep, but the file nests %d deep", lay.deep, d)
			}
		}
		return false
	}
	keys := md.Keys()
	if len(lay.lines) != len(keys) {
		t.Fatalf("scan found %d keys at lines %v, the decoder %d: %q", len(lay.lines), lay.lines, len(keys), keys)
	}
	src := newSource("x.toml", "/", &md, lay.lines)
	for _, k := range keys {
		got := src.line(k)
		want, ok := probeLine(&md, top, k)
		// For a multi-line string the decoder gives the line where the
		// string ends, the scan the line of the key, which is better. For
		// an empty key in an inline table (x = {"" = 1}) it has none.
		if ok && got != want && want != 0 && !(md.Type(k...) == "String" && got < want) {
			t.Errorf("key %s: scan says line %d, decoder %d", k, got, want)
		}
	}
	return true
}

// decodedDepth is how deep the decoded value v, at depth d, nests: each
// table key and each array level counts, as for maxDepth. An array of
// tables ([[x]]) counts one level more than scanLayout counts it, which
// only makes decodedDepth an upper bound.
func decodedDepth(v any, d int) int {
	deepest := d
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			deepest = max(deepest, decodedDepth(e, d+1))
		}
	case []any:
		deepest = d + 1 // scanLayout counts the level of an empty array too
		for _, e := range x {
			deepest = max(deepest, decodedDepth(e, d+1))
		}
	case []map[string]any:
		deepest = d + 1
		for _, e := range x {
			deepest = max(deepest, decodedDepth(e, d+1))
		}
	}
	return deepest
}

// errLineProbe is what lineProbe returns.
var errLineProbe = errors.New("line probe")

// lineProbe is how Load found a key's line before scanLayout: the
// decoder reports an Unmarshaler's error as a ParseError carrying the
// position of the key being decoded (after splitting the whole file into
// lines, which made Load quadratic).
type lineProbe struct{}

func (*lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// probeLine asks the decoder for the line of key; false when key cannot
// be reached through tables and arrays of tables.
func probeLine(md *toml.MetaData, top map[string]toml.Primitive, key toml.Key) (int, bool) {
	p, ok := top[key[0]]
	for _, part := range key[1:] {
		if !ok {
			return 0, false
		}
		var m map[string]toml.Primitive
		if md.PrimitiveDecode(p, &m) == nil {
			p, ok = m[part]
			continue
		}
		// Every table of an array shares one position per key: the last.
		var arr []map[string]toml.Primitive
		if md.PrimitiveDecode(p, &arr) != nil {
			return 0, false
		}
		ok = false
		for _, m := range arr {
			if q, found := m[part]; found {
				p, ok = q, true
			}
		}
	}
	if !ok {
		return 0, false
	}
	var probe lineProbe
	var pe toml.ParseError
	if errors.As(md.PrimitiveDecode(p, &probe), &pe) {
		return pe.Position.Line, true
	}
	return 0, false
}

// manyServices is n built-in services on ports 10000 and up, every fifth
// on udp, in a file of four lines per service.
func manyServices(n int) string {
	var b strings.Builder
	for i := range n {
		proto := "tcp"
		if i%5 == 0 {
			proto = "udp"
		}
		fmt.Fprintf(&b, "[services.s%05d]\nbuiltin = \"echo\"\nport = %d\nprotocol = %q\n", i, 10000+i, proto)
	}
	return b.String()
}

// TestManyServices loads a file of a few thousand services, one of which
// reuses the first one's socket: every service is there, and the one
// collision is found, at its line, naming the right service.
func TestManyServices(t *testing.T) {
	const n = 3000
	cfg, _ := mustLoad(t, manyServices(n))
	if len(cfg.Services) != n {
		t.Fatalf("got %d services, want %d", len(cfg.Services), n)
	}
	text := manyServices(n) + "[services.zz]\nbuiltin = \"echo\"\nport = 10000\nprotocol = \"udp\"\n"
	_, _, err := loadText(t, rootOpts(), text)
	errs := loadErrors(t, err)
	want := fmt.Sprintf(`services.toml:%d: service "zz": key "port": socket udp/:10000 is also used by service "s00000"`, 4*n+3)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
		t.Fatalf("got %v\nwant one error containing %q", err, want)
	}
}

// TestLoadScalesLinearly loads n and 2n services and compares the bytes
// allocated: about twice as many for a linear Load, four times for a
// quadratic one such as the line look-up that split the whole file once
// per key. Bytes allocated do not depend on timing or on the collector.
func TestLoadScalesLinearly(t *testing.T) {
	dir := t.TempDir()
	small := writeFile(t, dir, "small.toml", manyServices(1500), 0o644)
	large := writeFile(t, dir, "large.toml", manyServices(3000), 0o644)
	allocated := func(path string) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := rootOpts().Load(path); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	allocated(small) // first look-ups of the services database
	s, l := allocated(small), allocated(large)
	if ratio := float64(l) / float64(s); ratio > 2.6 {
		t.Errorf("Load allocated %d bytes for 1500 services and %d for 3000: %.2f times as much, want about 2", s, l, ratio)
	}
}

// BenchmarkLoad10000Services loads a generated file of 10,000 services.
func BenchmarkLoad10000Services(b *testing.B) {
	path := writeFile(b, b.TempDir(), "services.toml", manyServices(10000), 0o644)
	b.ResetTimer()
	for b.Loop() {
		if _, err := rootOpts().Load(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostileNesting loads each shape of TestHostileNestingIsRefused.
func BenchmarkHostileNesting(b *testing.B) {
	for _, tt := range hostileNesting() {
		b.Run(tt.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "services.toml")
			if err := os.WriteFile(path, []byte(tt.toml), 0o644); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := rootOpts().Load(path); !errors.Is(err, errTooDeep) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCheckSocketsMatchesPairwise compares checkSockets with comparing
// every pair through span.overlaps, as it did before it was made linear,
// on random sets of sockets crowded onto a few ports and paths.
func TestCheckSocketsMatchesPairwise(t *testing.T) {
	hosts := []string{"", "0.0.0.0", "::", "127.0.0.1", "127.0.0.2", "::1", "fe80::1%lo", "::ffff:127.0.0.1"}
	nets := []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "unixgram"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		var keys []ListenKey
		for range 1 + rng.IntN(12) {
			network := nets[rng.IntN(len(nets))]
			var addr string
			if isUnixNet(network) {
				addr = fmt.Sprintf("/run/s%d.sock", rng.IntN(3))
			} else {
				addr = fmt.Sprintf("%s:%d", bracket(hosts[rng.IntN(len(hosts))]), 7+rng.IntN(2))
			}
			keys = append(keys, ListenKey{Network: network, Address: addr})
		}
		got, want := socketErrors(keys, checkSockets), socketErrors(keys, pairwiseCheckSockets)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d, sockets %v:\ngot  %q\nwant %q", round, keys, got, want)
		}
	}
}

// bracket writes host as the host part of host:port.
func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// socketErrors runs check on services s0, s1, ... listening on keys, and
// returns the errors it reports; every third service is disabled.
func socketErrors(keys []ListenKey, check func([]*builder)) []string {
	l := &loader{}
	src := &source{path: "x.toml"}
	var built []*builder
	for i, k := range keys {
		name := fmt.Sprintf("s%02d", i)
		built = append(built, &builder{l: l, def: &svcDef{name: name, src: src, line: i + 1}, sp: newSpec(),
			svc: &Service{Name: name, File: "x.toml", Listen: k, Disabled: i%3 == 2}})
	}
	check(built)
	var out []string
	for _, e := range l.errs {
		out = append(out, e.Error())
	}
	return out
}

// pairwiseCheckSockets is checkSockets as it was: every pair compared.
func pairwiseCheckSockets(built []*builder) {
	var seen []*builder
	for _, b := range built {
		if b.svc.Disabled || b.svc.Listen == (ListenKey{}) {
			continue
		}
		for _, prev := range seen {
			if spanOf(b.svc.Listen).overlaps(spanOf(prev.svc.Listen)) {
				b.collision(prev.svc)
				break
			}
		}
		seen = append(seen, b)
	}
}

// TestEditDistanceBound checks that the bounded editDistance agrees with
// the plain one below the bound.
func TestEditDistanceBound(t *testing.T) {
	words := append(serviceKeys(), "", "x", "prot", "usr", "limit", "timeouts", "nofiles", strings.Repeat("k", 100))
	for _, a := range words {
		for _, b := range words {
			want := plainEditDistance(a, b)
			for bound := 1; bound <= 4; bound++ {
				got := editDistance(a, b, bound)
				if (want < bound && got != want) || (want >= bound && got < bound) {
					t.Errorf("editDistance(%q, %q, %d) = %d, distance %d", a, b, bound, got, want)
				}
			}
		}
	}
}

// plainEditDistance is the Levenshtein distance, computed in full.
func plainEditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
