package config

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseShebang(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name   string
		head   string
		script bool
		interp string
		arg    string
		hasArg bool
		err    error
	}{
		{"plain", "#!/bin/sh\necho\n", true, "/bin/sh", "", false, nil},
		{"argument", "#! /bin/sh -x\n", true, "/bin/sh", "-x", true, nil},
		{"tabs, inner spaces kept, trailing trimmed", "#!\t/bin/sh\t-x  y \t\n", true, "/bin/sh", "-x  y", true, nil},
		{"env gets one argument", "#!/usr/bin/env python3 -u\n", true, "/usr/bin/env", "python3 -u", true, nil},
		{"no newline, end of file", "#!/bin/sh", true, "/bin/sh", "", false, nil},
		{"no newline, argument", "#!/bin/sh -e", true, "/bin/sh", "-e", true, nil},
		{"CR kept", "#!/bin/sh\r\n", true, "/bin/sh\r", "", false, nil},
		{"NUL ends the path, hides the newline", "#!/bin/sh\x00 -x\n", true, "/bin/sh", "", false, nil},
		{"NUL ends the argument", "#!/bin/sh -x\x00y\n", true, "/bin/sh", "-x", true, nil},
		{"empty argument after a NUL", "#!/bin/sh \x00y\n", true, "/bin/sh", "", true, nil},
		{"argument cut at byte 255", "#!/bin/sh " + long, true, "/bin/sh", long[:245], true, nil},
		{"line of exactly 255 bytes and newline", "#!/bin/sh " + long[:244] + "\n", true, "/bin/sh", long[:244], true, nil},
		{"newline is byte 257", "#!/bin/sh " + long[:246] + "\n", true, "/bin/sh", long[:245], true, nil},
		{"only #! and newline", "#!\n", true, "", "", false, errNoInterp},
		{"only spaces", "#!   \n", true, "", "", false, errNoInterp},
		{"256 bytes of spaces", "#!" + strings.Repeat(" ", 254) + "\n", true, "", "", false, errNoInterp},
		{"only #!", "#!", true, "", "", false, errEmptyInterp},
		{"#! and spaces, end of file", "#!  ", true, "", "", false, errEmptyInterp},
		{"path cut", "#!/" + long, true, "", "", false, errCutInterp},
		{"path in the last byte", "#!" + strings.Repeat(" ", 253) + "/x", true, "", "", false, errCutInterp},
		{"path ends at the end of file", "#!" + strings.Repeat(" ", 252) + "/", true, "/", "", false, nil},
		{"ELF", "\x7fELF\x02\x01\x01", false, "", "", false, nil},
		{"hash only", "#/bin/sh\n", false, "", "", false, nil},
		{"empty file", "", false, "", "", false, nil},
		{"one byte", "#", false, "", "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := []byte(tt.head)
			if len(head) > binprmBufSize {
				head = head[:binprmBufSize]
			}
			sb, script, err := parseShebang(head)
			if script != tt.script || err != tt.err {
				t.Fatalf("script %v, err %v; want %v, %v", script, err, tt.script, tt.err)
			}
			if sb.interp != tt.interp || sb.arg != tt.arg || sb.hasArg != tt.hasArg {
				t.Errorf("got interp %q arg %q (%v); want %q %q (%v)", sb.interp, sb.arg, sb.hasArg, tt.interp, tt.arg, tt.hasArg)
			}
		})
	}
}

// TestParseShebangMatchesKernel runs scripts with #! lines made to probe
// load_script (spaces, tabs, NULs, CRs, lines around 256 bytes) and
// checks that the kernel does what parseShebang says. The interpreter
// is a shell script that prints its argv: the kernel then runs
// /bin/sh SHOW [ARG] SCRIPT, where SHOW is the interpreter path as the
// kernel read it from the line ($0).
func TestParseShebangMatchesKernel(t *testing.T) {
	dir := t.TempDir()
	show := writeFile(t, dir, "show", "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\"\n", 0o755)
	var lines []string
	for _, pre := range []string{"", " ", "\t ", " \t\t"} {
		for _, tail := range []string{"", "\n", " \n", " arg\n", " a b\tc \t\n", "\t\x00x\n", " x\x00y\n", " \x00\n", "\r\n", "x\n", " \r\n"} {
			lines = append(lines, "#!"+pre+show+tail)
		}
	}
	// Around the 256 bytes: pad the argument, or the spaces before the
	// path, so that the line or the path ends on each side of the limit.
	for n := binprmBufSize - len(show) - 6; n <= binprmBufSize-len(show)+2; n++ {
		lines = append(lines,
			"#!"+show+" "+strings.Repeat("a", n),
			"#!"+show+" "+strings.Repeat("a", n)+"\n",
			"#!"+strings.Repeat(" ", n)+show,
			"#!"+strings.Repeat(" ", n)+show+"\n",
			"#!"+strings.Repeat("\t", n)+show+" x",
			"#!"+show+strings.Repeat(" ", n)+"z")
	}
	lines = append(lines, "#!", "#!\n", "#!  ", "#! \t\n", "no shebang\n", "#!"+show+strings.Repeat("x", 300))
	rng := rand.New(rand.NewPCG(8, 256))
	pieces := []string{" ", "\t", "a", "\x00", "\n", "\r", "-"}
	for range 150 {
		var b strings.Builder
		b.WriteString("#!")
		for range rng.IntN(3) {
			b.WriteString(pieces[rng.IntN(2)])
		}
		b.WriteString(show)
		for range rng.IntN(8) {
			p := pieces[rng.IntN(len(pieces))]
			n := 1 + rng.IntN(4)
			if rng.IntN(5) == 0 {
				n = rng.IntN(260)
			}
			b.WriteString(strings.Repeat(p, n))
		}
		lines = append(lines, b.String())
	}
	for i, line := range lines {
		script := writeFile(t, dir, fmt.Sprintf("s%d", i), line, 0o755)
		head := []byte(line)
		if len(head) > binprmBufSize {
			head = head[:binprmBufSize]
		}
		sb, isScript, perr := parseShebang(head)
		out, err := exec.Command(script).Output()
		var want string
		switch {
		case !isScript:
			want = "error " + syscall.ENOEXEC.Error() // neither ELF nor #!
		case errors.Is(perr, errEmptyInterp):
			// The kernel opens "": the working folder on Linux 6.18,
			// no file at all on others.
			want = "error " + syscall.EACCES.Error()
			if errors.Is(err, syscall.ENOENT) {
				want = "error " + syscall.ENOENT.Error()
			}
		case perr != nil:
			want = "error " + syscall.ENOEXEC.Error()
		case sb.interp != show:
			want = "error " + syscall.ENOENT.Error() // no such interpreter
		case sb.hasArg:
			want = show + "\n" + sb.arg + "\n" + script + "\n"
		default:
			want = show + "\n" + script + "\n"
		}
		got := string(out)
		var errno syscall.Errno
		if errors.As(err, &errno) {
			got = "error " + errno.Error()
		} else if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if got != want {
			t.Errorf("#! line %q: the kernel gives %q, parseShebang says %q", line, got, want)
		}
	}
}

// scriptDir is a folder with an interpreter chain: wrapN is a script
// whose interpreter is wrapN-1, wrap0's is /bin/sh. Its parents are
// 0755 so that nobody can reach it.
func scriptDir(t *testing.T) string {
	t.Helper()
	dir := configDir(t)
	writeFile(t, dir, "wrap0", "#!/bin/sh\nexit 0\n", 0o755)
	for i := 1; i <= maxScripts; i++ {
		writeFile(t, dir, fmt.Sprintf("wrap%d", i), fmt.Sprintf("#!%s\n", filepath.Join(dir, fmt.Sprintf("wrap%d", i-1))), 0o755)
	}
	return dir
}

// loadScript writes the handler script and a service running it as user
// (with the extra lines), and loads it.
func loadScript(t *testing.T, opts Options, dir, handler, user, extra string) (*Config, error) {
	t.Helper()
	h := writeFile(t, dir, "h", handler, 0o755)
	text := fmt.Sprintf("[services.s]\nport = 7000\npath = %q\nuser = %q\n%s\n", h, user, extra)
	path := writeFile(t, dir, "services.toml", text, 0o644)
	cfg, err := opts.Load(path)
	checkResult(t, cfg, err)
	return cfg, err
}

func TestScriptChecks(t *testing.T) {
	const none = "" // no error
	tests := []struct {
		name    string
		handler string // %D is the folder of the test
		extra   string
		want    string // the one error; %D is the folder
		warn    string // the one warning, when want is none
	}{
		{"binary handler", "\x7fELF", "", none, ""},
		{"interpreter found", "#!/bin/sh\n", "", none, ""},
		{"interpreter missing", "#!/nonexistent/pythonX\n", "", "handler %D/h: interpreter /nonexistent/pythonX (from its #! line) does not exist", ""},
		{"interpreter a folder", "#!/tmp\n", "", "interpreter /tmp (from its #! line) is not a regular file", ""},
		{"interpreter without x bit", "#!%D/notexec\n", "", "interpreter %D/notexec (from its #! line) is not executable (mode 0644)", ""},
		{"interpreter nobody cannot execute", "#!%D/rootonly\n", "", "interpreter %D/rootonly (from its #! line): user nobody cannot execute it: mode 0700", ""},
		{"interpreter in a folder nobody cannot enter", "#!%D/closed/sh\n", "", "interpreter %D/closed/sh (from its #! line): user nobody cannot enter %D/closed", ""},
		{"interpreter named with a CR", "#!/bin/sh\r\necho\r\n", "", `interpreter "/bin/sh\r" (from its #! line) does not exist (the line ends in "\r": the file has DOS line endings)`, ""},
		{"no interpreter named", "#!\n", "", "handler %D/h: its #! line names no interpreter: exec fails with exec format error", ""},
		{"interpreter path cut", "#!/" + strings.Repeat("x", 300), "", "its #! line is longer than the 256 bytes the kernel reads", ""},
		{"relative, found from working_dir", "#!wrap0\n", `working_dir = "%D"`, none, ""},
		{"relative, missing from /", "#!wrap0\n", "", "interpreter wrap0 (from its #! line, found from working_dir / as /wrap0) does not exist", ""},
		{"nested, missing", "#!%D/bad\n", "", "interpreter /nonexistent/sh (from the #! line of interpreter %D/bad) does not exist", ""},
		{"4 nested scripts", "#!%D/wrap3\n", "", none, ""},
		{"5 nested scripts", "#!%D/wrap4\n", "", "handler %D/h: interpreter %D/wrap0 (from the #! line of interpreter %D/wrap1) is a script too: the kernel follows at most 4 nested interpreters (exec fails with too many levels of symbolic links)", ""},
		{"script nobody cannot read", "#!/bin/sh\n", "", "handler %D/h: user nobody cannot read it, and its interpreter /bin/sh must read it to run it: mode 0711", ""},
		{"nested script nobody cannot read", "#!%D/secret\n", "", "user nobody cannot read interpreter %D/secret (from its #! line), and its interpreter /bin/sh must read it to run it", ""},
		{"env finds the program", "#!/usr/bin/env sh\n", "", none, ""},
		{"env, missing program", "#!/usr/bin/env nosuchprog\n", "", none, `handler %D/h: "#!/usr/bin/env nosuchprog": env finds no executable "nosuchprog" on the handler's PATH ` + DefaultPath + ": it will fail at every connection"},
		{"env -S, missing program", "#!/usr/bin/env -S A=1 nosuchprog -x\n", "", none, `env finds no executable "nosuchprog" on the handler's PATH`},
		{"env -S with PATH=", "#!/usr/bin/env -S PATH=%D wrap0\n", "", none, ""},
		{"env, one argument with a space", "#!/usr/bin/env sh -e\n", "", none, `env finds no executable "sh -e" on the handler's PATH ` + DefaultPath + ` (the kernel gives env the rest of the #! line as one argument: write "#!/usr/bin/env -S sh -e" to split it)`},
		{"env, PATH from env", "#!/usr/bin/env wrap0\n", `env = { PATH = "%D" }`, none, ""},
		{"env, wrong PATH from env", "#!/usr/bin/env sh\n", `env = { PATH = "%D" }`, none, `on the handler's PATH %D: it will fail`},
		{"env, PATH from superd", "#!/usr/bin/env nosuchprog\n", `pass_env = ["PATH"]`, none, ""},
		{"env, relative program", "#!/usr/bin/env ./nosuchprog\n", "", none, `env finds no executable "./nosuchprog": it will fail`},
		{"env, an option", "#!/usr/bin/env -i nosuchprog\n", "", none, ""},
	}
	nobody := credOf(t, "nobody")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.want, "user nobody cannot") && os.Geteuid() == int(nobody.Uid) {
				t.Skip("the test's files belong to nobody here")
			}
			dir := scriptDir(t)
			writeFile(t, dir, "rootonly", "\x7fELF", 0o700)
			writeFile(t, dir, "secret", "#!/bin/sh\n", 0o711)
			writeFile(t, dir, "bad", "#!/nonexistent/sh\n", 0o755)
			closed := filepath.Join(dir, "closed")
			writeFile(t, closed, "sh", "\x7fELF", 0o755)
			if err := os.Chmod(closed, 0o700); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tt.handler, "/usr/bin/env") {
				if _, err := os.Stat("/usr/bin/env"); err != nil {
					t.Skip("needs /usr/bin/env")
				}
			}
			d := func(s string) string { return strings.ReplaceAll(s, "%D", dir) }
			h := writeFile(t, dir, "h", d(tt.handler), 0o755)
			if tt.name == "script nobody cannot read" {
				if err := os.Chmod(h, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			text := fmt.Sprintf("[services.s]\nport = 7000\npath = %q\nuser = \"nobody\"\n%s\n", h, d(tt.extra))
			cfg, err := rootOpts().Load(writeFile(t, dir, "services.toml", text, 0o644))
			checkResult(t, cfg, err)
			errs := loadErrors(t, err)
			switch {
			case tt.want == none && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tt.want != none && len(errs) != 1:
				t.Fatalf("got %d errors, want 1 containing %q:\n%v", len(errs), d(tt.want), err)
			case tt.want != none:
				if !strings.Contains(errs[0].Error(), d(tt.want)) || errs[0].Key != "path" {
					t.Errorf("got %v\nwant an error at key path containing %q", errs[0], d(tt.want))
				}
				return
			}
			switch {
			case tt.warn == "" && len(cfg.Warnings) != 0:
				t.Errorf("got warnings %v, want none", cfg.Warnings)
			case tt.warn == "":
			case len(cfg.Warnings) != 1:
				t.Errorf("got warnings %v, want one containing %q", cfg.Warnings, d(tt.warn))
			case !strings.Contains(cfg.Warnings[0].Error(), d(tt.warn)) || cfg.Warnings[0].Key != "path":
				t.Errorf("got warning %v\nwant one at key path containing %q", cfg.Warnings[0], d(tt.warn))
			}
		})
	}
}

// TestScriptDepthMatchesKernel checks maxScripts against the kernel: a
// chain of maxScripts scripts runs, one more fails with ELOOP.
func TestScriptDepthMatchesKernel(t *testing.T) {
	dir := scriptDir(t)
	ok := filepath.Join(dir, fmt.Sprintf("wrap%d", maxScripts-1))
	if err := exec.Command(ok).Run(); err != nil {
		t.Errorf("%d scripts: %v, want them to run", maxScripts, err)
	}
	tooDeep := filepath.Join(dir, fmt.Sprintf("wrap%d", maxScripts))
	if err := exec.Command(tooDeep).Run(); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("%d scripts: %v, want ELOOP", maxScripts+1, err)
	}
}

// TestScriptCheckedOncePerHandler checks that services sharing a handler
// all get its error, found once.
func TestScriptCheckedOncePerHandler(t *testing.T) {
	dir := configDir(t)
	h := writeFile(t, dir, "h", "#!/nonexistent/sh\n", 0o755)
	var b strings.Builder
	for i := range 3 {
		fmt.Fprintf(&b, "[services.s%d]\nport = %d\npath = %q\nuser = \"nobody\"\n", i, 7000+i, h)
	}
	_, err := rootOpts().Load(writeFile(t, dir, "services.toml", b.String(), 0o644))
	errs := loadErrors(t, err)
	if len(errs) != 3 {
		t.Fatalf("got %d errors, want 3: %v", len(errs), err)
	}
	for i, e := range errs {
		if e.Service != fmt.Sprintf("s%d", i) || !strings.Contains(e.Error(), "/nonexistent/sh (from its #! line) does not exist") {
			t.Errorf("error %d: %v", i, e)
		}
	}
}

// TestInterpreterOwnership checks that an interpreter others may write
// is refused as a handler would be: whoever writes it runs commands as
// the handler's user.
func TestInterpreterOwnership(t *testing.T) {
	needRoot(t)
	dir := configDir(t)
	interp := writeFile(t, dir, "interp", "\x7fELF", 0o757)
	_, err := loadScript(t, Options{Euid: 0, Perms: PermsOn}, dir, "#!"+interp+"\n", "nobody", "")
	errs := loadErrors(t, err)
	want := "interpreter " + interp + " (from its #! line): mode 0757, writable by others: refusing (whoever can write it can run commands as nobody)"
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
		t.Fatalf("got %v\nwant one error containing %q", err, want)
	}
	if err := os.Chmod(interp, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := loadScript(t, Options{Euid: 0, Perms: PermsOn}, dir, "#!"+interp+"\n", "nobody", ""); err != nil {
		t.Errorf("safe interpreter: %v", err)
	}
}

// TestScriptAsSelf checks that a superd that is not root, running the
// handler as itself, is judged with its own uid and groups.
func TestScriptAsSelf(t *testing.T) {
	dir := configDir(t)
	writeFile(t, dir, "grouponly", "\x7fELF", 0o710)
	if err := os.Chown(filepath.Join(dir, "grouponly"), os.Geteuid(), 4000777); err != nil {
		t.Skipf("cannot chown to a test group: %v", err)
	}
	opts := func(groups ...uint32) Options {
		return Options{Euid: 4000123, Host: Host{
			Groups:        func() (uint32, []uint32) { return 4000123, groups },
			HasCapability: func(int) bool { return false },
		}}
	}
	h := writeFile(t, dir, "h", "#!"+filepath.Join(dir, "grouponly")+"\n", 0o755)
	text := fmt.Sprintf("[services.s]\nport = 7000\npath = %q\n", h)
	path := writeFile(t, dir, "services.toml", text, 0o644)
	_, err := opts().Load(path)
	want := "(from its #! line): user 4000123 cannot execute it: mode 0710"
	if errs := loadErrors(t, err); len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
		t.Errorf("not in the group: got %v, want one error containing %q", err, want)
	}
	if _, err := opts(4000777).Load(path); err != nil {
		t.Errorf("in the group: %v", err)
	}
}
