package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzLoad feeds any bytes to Load: the result must be an error made of
// *Error values, or a configuration that keeps Load's promises. Never a
// panic.
func FuzzLoad(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".toml" {
			return err
		}
		data, err := os.ReadFile(path)
		f.Add(data)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	deep := []string{
		"[services.s" + strings.Repeat(".x", 50) + "]\n",
		svc("env = " + strings.Repeat("{a=", 50) + `"x"` + strings.Repeat("}", 50)),
		svc("args = " + strings.Repeat("[", 50) + strings.Repeat("]", 50)),
		svc("args = " + strings.Repeat("[{a=", 20) + strings.Repeat("}]", 20)),
		svc(`env = {a={a={a={a={a="x"}}}}}`), // 8 levels: the most allowed
		svc(`timeout = "2562047h47m16s"`),
	}
	for _, s := range append([]string{"", svc(`limits = { as = "1G", cpu = "2m" }`), svc(`only_from = ["::ffff:10.0.0.0/104"]`)}, deep...) {
		f.Add([]byte(s))
	}
	// One file, rewritten for each input: inputs run one at a time in a
	// fuzzing process, and a fresh t.TempDir per input made minimizing
	// an input take minutes.
	path := filepath.Join(f.TempDir(), "services.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if hasInclude(data) {
			// Includes would read whatever the fuzzer names, such as a
			// /proc file that blocks.
			t.Skip()
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := rootOpts().Load(path)
		checkResult(t, cfg, err)
		if cfg != nil {
			checkConfig(t, cfg, path)
		}
	})
}

// hasInclude reports whether data sets superd.include, as Load's parser
// sees it. Data that does not parse includes nothing.
func hasInclude(data []byte) bool {
	var top map[string]any
	if _, err := toml.Decode(string(data), &top); err != nil {
		return false
	}
	superd, _ := top["superd"].(map[string]any)
	_, ok := superd["include"]
	return ok
}

// checkConfig checks the promises of a valid configuration.
func checkConfig(t *testing.T, cfg *Config, path string) {
	t.Helper()
	if len(cfg.Global.Files) != 1 || cfg.Global.Files[0] != path {
		t.Errorf("Files = %q", cfg.Global.Files)
	}
	if !slices.IsSortedFunc(cfg.Services, func(a, b *Service) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("services not sorted by name")
	}
	for _, s := range cfg.Services {
		checkService(t, s)
	}
}

// checkService checks one service of a valid configuration.
func checkService(t *testing.T, s *Service) {
	t.Helper()
	switch {
	case s.Name == "" || s.Listen == (ListenKey{}):
		t.Errorf("service %q: no name or socket: %+v", s.Name, s)
	case s.Limits.Instances < 1:
		t.Errorf("service %q: instances %d", s.Name, s.Limits.Instances)
	case s.Builtin != "" && s.Exec.Path != "":
		t.Errorf("service %q: both builtin and path", s.Name)
	case s.Builtin == "" && (!filepath.IsAbs(s.Exec.Path) || len(s.Exec.Argv) == 0):
		t.Errorf("service %q: path %q, argv %q", s.Name, s.Exec.Path, s.Exec.Argv)
	case s.Builtin == "" && !s.Disabled && !s.Exec.Cred.Set:
		t.Errorf("service %q: handler would run as root without user = \"root\"", s.Name)
	case !s.Listen.Stream() && s.Builtin == "" && !s.Wait:
		t.Errorf("service %q: dgram without wait", s.Name)
	}
}
