package config

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func TestErrorFormat(t *testing.T) {
	base := errors.New("port 70000 out of range 1..65535")
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "services.toml", Line: 12, Service: "hello", Key: "port", Err: base},
			`services.toml:12: service "hello": key "port": port 70000 out of range 1..65535`},
		{Error{File: "services.toml", Service: "hello", Err: base},
			`services.toml: service "hello": port 70000 out of range 1..65535`},
		{Error{File: "services.toml", Line: 3, Key: "superd.log", Err: base},
			`services.toml:3: key "superd.log": port 70000 out of range 1..65535`},
		{Error{Line: 4, Err: base}, `line 4: port 70000 out of range 1..65535`},
		{Error{Err: base}, `port 70000 out of range 1..65535`},
		{Error{File: "x.toml"}, `x.toml: invalid`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestErrorUnwrap(t *testing.T) {
	_, err := rootOpts().Load("testdata/no-such-file.toml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.File != "testdata/no-such-file.toml" {
		t.Errorf("errors.As: %#v", e)
	}
}

// TestErrorsGolden pins the full text of `superd check` for a file with
// one of each kind of mistake; run with -update after an intended change.
func TestErrorsGolden(t *testing.T) {
	_, err := rootOpts().Load("testdata/errors.toml")
	if err == nil {
		t.Fatal("testdata/errors.toml loaded without error")
	}
	// Handler paths are absolute: show them from the package folder, so
	// that the golden file holds wherever the repository is checked out.
	wd, werr := os.Getwd()
	if werr != nil {
		t.Fatal(werr)
	}
	got := strings.ReplaceAll(err.Error()+"\n", wd+"/", "")
	const golden = "testdata/errors.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	if n := strings.Count(got, "\n"); n < 20 {
		t.Errorf("only %d errors reported", n)
	}
}
