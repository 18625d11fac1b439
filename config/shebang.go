package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// A handler that is a script runs only if the kernel can run the
// interpreter its #! line names. Without these checks `superd check`
// says OK and every connection logs "fork/exec /srv/h: no such file or
// directory", about a handler that does exist. Load follows the #! lines
// as the kernel's fs/binfmt_script.c does and reports, at the path key:
//
//	#! line names no interpreter, or is cut inside its path  error
//	interpreter missing, not a regular file, not executable  error
//	  by the handler's user, or on a noexec file system
//	interpreter that is a script: the same checks, again,    error
//	  at most 4 levels deep (the kernel's limit)
//	interpreter that others may write (as for the handler;   error
//	  only when the ownership checks apply)
//	the script the last interpreter reads, unreadable by     error
//	  the handler's user
//	#!/usr/bin/env prog: prog not on the handler's PATH      warning
//
// A relative interpreter (#!python) is found from the handler's
// working_dir, as the kernel finds it from the folder superd execs the
// handler in. A handler or interpreter that Load cannot read itself (a
// non-root superd, mode 0711) is not followed: the kernel can still run
// it, and Load cannot tell what it is.

// binprmBufSize is how much of a file the kernel reads to decide how to
// run it (BINPRM_BUF_SIZE): a #! line is judged on these bytes alone.
const binprmBufSize = 256

// maxScripts is how many #! lines one exec follows: the handler's and
// those of 4 nested interpreters. fs/exec.c's exec_binprm fails with
// ELOOP when the interpreter after those is a script too (measured on
// Linux 6.18: a chain of 5 scripts runs, a chain of 6 fails).
const maxScripts = 5

// Why the kernel refuses a #! line (the error execve returns).
var (
	errNoInterp = fmt.Errorf("names no interpreter: exec fails with %v", unix.ENOEXEC)
	// The kernel opens "" and fails: EACCES on Linux 6.18, where ""
	// finds the working folder, ENOENT where it finds nothing.
	errEmptyInterp = errors.New("names no interpreter (a NUL byte where its path should start): exec fails")
	errCutInterp   = fmt.Errorf("is longer than the %d bytes the kernel reads, and they end inside the interpreter path: exec fails with %v", binprmBufSize, unix.ENOEXEC)
)

// shebang is a #! line as the kernel reads it.
type shebang struct {
	interp string // the interpreter path, as written
	arg    string // the optional argument: the rest of the line, trimmed
	hasArg bool   // arg was given (it may be empty after a NUL)
}

// parseShebang reads head, the first bytes of a file (at most
// binprmBufSize count), exactly as load_script does:
//
//	head                                  script  result
//	not starting with "#!"                false   -
//	"#!" then only spaces and tabs        true    errNoInterp
//	  up to a newline, or through byte 256
//	no newline in 256 bytes, and no       true    errCutInterp
//	  space, tab or NUL after the path
//	path starting with a NUL byte         true    errEmptyInterp
//	"#!" spaces/tabs PATH [spaces/tabs    true    interp PATH; arg ARG,
//	  ARG] spaces/tabs, up to a newline           hasArg when ARG is there
//
// The line ends at the first newline before any NUL; without one it is
// the first 255 bytes (the kernel overwrites the last with a NUL). PATH
// ends at a space, tab or NUL, ARG at a NUL, and trailing spaces and
// tabs are trimmed: "#!/usr/bin/env python3 -u" runs env with the one
// argument "python3 -u".
func parseShebang(head []byte) (sb shebang, script bool, err error) {
	var buf [binprmBufSize]byte // zero-filled past head, as the kernel's
	copy(buf[:], head)
	if buf[0] != '#' || buf[1] != '!' {
		return shebang{}, false, nil
	}
	last := len(buf) - 1
	end := strnchr(buf[:], '\n')
	if end < 0 {
		end = nextNonSpaceTab(buf[:], 2, last)
		if end < 0 {
			return shebang{}, true, errNoInterp
		}
		if nextTerminator(buf[:], end, last) < 0 {
			return shebang{}, true, errCutInterp
		}
		end = last
	}
	for isSpaceTab(buf[end-1]) { // buf[1] is '!': this stops
		end--
	}
	name := nextNonSpaceTab(buf[:], 2, end)
	if name < 0 || name == end {
		return shebang{}, true, errNoInterp
	}
	arg := -1
	sep := nextTerminator(buf[:], name, end)
	if sep >= 0 && buf[sep] != 0 {
		arg = nextNonSpaceTab(buf[:], sep, end)
	}
	buf[end] = 0
	if arg >= 0 {
		buf[sep] = 0
		sb.arg, sb.hasArg = cString(buf[arg:]), true
	}
	sb.interp = cString(buf[name:])
	if sb.interp == "" {
		return shebang{}, true, errEmptyInterp
	}
	return sb, true, nil
}

func isSpaceTab(c byte) bool { return c == ' ' || c == '\t' }

// strnchr is the kernel's: the index of the first c in b before any NUL,
// or -1.
func strnchr(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
		if x == 0 {
			break
		}
	}
	return -1
}

// nextNonSpaceTab is the index of the first byte in b[first..last] (both
// included) that is not a space or a tab, or -1.
func nextNonSpaceTab(b []byte, first, last int) int {
	for i := first; i <= last; i++ {
		if !isSpaceTab(b[i]) {
			return i
		}
	}
	return -1
}

// nextTerminator is the index of the first space, tab or NUL in
// b[first..last] (both included), or -1.
func nextTerminator(b []byte, first, last int) int {
	for i := first; i <= last; i++ {
		if isSpaceTab(b[i]) || b[i] == 0 {
			return i
		}
	}
	return -1
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// readHead returns the first binprmBufSize bytes of the regular file at
// p; false when it cannot be read (or is no regular file).
func readHead(p string) ([]byte, bool) {
	// O_NONBLOCK: a FIFO put in place of the file must not block Load.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	buf := make([]byte, binprmBufSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, false
	}
	return buf[:n], true
}

// onNoexec reports whether p is on a file system mounted noexec, where
// execve fails with EACCES whatever the mode.
func onNoexec(p string) bool {
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Flags&unix.ST_NOEXEC != 0
}

// showPath prints a path from a #! line so that a stray control byte
// (the \r of a file saved with DOS line endings) is seen.
func showPath(p string) string {
	if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\uFFFD' }) {
		return strconv.Quote(p)
	}
	return p
}

// scriptKey is what checkScript's findings depend on, besides the files:
// the handler, who executes it, its folder and PATH, and whose commands
// its interpreters become when the ownership checks apply (judge).
type scriptKey struct {
	handlerKey
	dir     string
	envPath string
	known   bool // envPath is known
	judge   bool
	owners  runAs
}

// scriptFindings is what checkScript found about one handler.
type scriptFindings struct{ errs, warns []error }

// checkScript follows the handler's #! lines (see the table at the top
// of this file). Thousands of services may run the same script: it is
// followed once per Load for each handler, identity, folder and PATH.
func (b *builder) checkScript(e Exec) {
	sp := b.sp
	if !sp.has("path") || sp.bad["user"] || sp.bad["group"] || sp.bad["working_dir"] || sp.bad["env"] || sp.bad["pass_env"] {
		return
	}
	c := b.execCred(e.Cred)
	k := scriptKey{handlerKey: handlerKey{path: e.Path, user: c.User, set: c.Set, uid: c.Uid, gid: c.Gid, groups: fmt.Sprint(c.Groups)},
		dir: e.Dir, judge: b.l.opts.checkPerms()}
	k.envPath, k.known = handlerPATH(e)
	if k.judge {
		k.owners = runAsOf(e.Cred)
	}
	f, ok := b.l.scripts[k]
	if !ok {
		f = b.l.newScriptCheck(k, c).run()
		if b.l.scripts == nil {
			b.l.scripts = map[scriptKey]scriptFindings{}
		}
		b.l.scripts[k] = f
	}
	for _, err := range f.errs {
		b.l.errs = append(b.l.errs, b.at("path", err))
	}
	for _, err := range f.warns {
		b.l.warns = append(b.l.warns, b.at("path", err))
	}
}

// newScriptCheck prepares the check that k asks for, run as c.
func (l *loader) newScriptCheck(k scriptKey, c Cred) scriptCheck {
	if l.scriptMemo == nil {
		l.scriptMemo = &scriptMemo{interps: map[memoKey]string{}, found: map[memoKey]bool{}}
	}
	s := scriptCheck{handler: k.path, dir: k.dir, cred: c, envPath: k.envPath, pathKnown: k.known,
		memo: l.scriptMemo, who: fmt.Sprintf("%+v", c)}
	if k.judge {
		r := k.owners
		s.owners = &r
		s.who += fmt.Sprintf(" owners %+v", r)
	}
	return s
}

// execCred is who the kernel checks when it executes the handler: its
// Cred, or, for a superd that is not root and runs the handler as
// itself, superd's own uid and groups.
func (b *builder) execCred(c Cred) Cred {
	euid := b.l.opts.Euid
	if c.Set || euid == 0 {
		return c
	}
	gid, groups := b.l.host.ownGroups()
	name := c.User
	if name == "" {
		name = strconv.Itoa(euid)
	}
	return Cred{Set: true, User: name, Uid: uint32(euid), Gid: gid, Groups: groups}
}

// handlerPATH is the PATH the handler gets: its env table's, else
// DefaultPath. known is false when pass_env takes PATH from superd's
// own environment, which only the running superd knows.
func handlerPATH(e Exec) (path string, known bool) {
	for _, kv := range e.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v, true
		}
	}
	if slices.Contains(e.PassEnv, "PATH") {
		return "", false
	}
	return DefaultPath, true
}

// scriptCheck is one handler's #! chain to follow.
type scriptCheck struct {
	handler string
	// dir is the handler's working folder: the kernel finds a relative
	// interpreter from the folder the exec happens in.
	dir string
	// cred is who executes; Set false (or uid 0) means root, who needs
	// only one execute bit.
	cred Cred
	// owners, when not nil, is whose commands the interpreters become:
	// who may write them is judged as for the handler.
	owners *runAs
	// envPath is the PATH env searches, when pathKnown.
	envPath   string
	pathKnown bool
	// memo holds the answers about interpreters and programs, shared
	// by every handler of the Load; who is the part of their question
	// that is cred and owners.
	memo *scriptMemo
	who  string
}

// scriptMemo remembers, for one Load, the checks that many handlers
// share: a thousand scripts may all start with #!/bin/sh.
type scriptMemo struct {
	interps map[memoKey]string // interpProblem's answers
	found   map[memoKey]bool   // findProgram's answers
}

// memoKey is one question to scriptMemo.
type memoKey struct{ a, b, c, who string }

// run follows the chain and returns what it found; each message starts
// with "handler PATH: ".
func (s scriptCheck) run() scriptFindings {
	var f scriptFindings
	fail := func(format string, args ...any) scriptFindings {
		f.errs = append(f.errs, fmt.Errorf("handler %s: "+format, append([]any{s.handler}, args...)...))
		return f
	}
	if onNoexec(s.handler) {
		return fail("is on a file system mounted noexec: exec fails with %v", unix.EACCES)
	}
	file := s.handler
	of := ""         // "" for the handler, else "interpreter X (from ...): "
	lastScript := "" // the script the final interpreter is given to read
	lastOf := ""
	for scripts := 0; ; scripts++ {
		head, ok := readHead(file)
		if !ok {
			break
		}
		sb, script, err := parseShebang(head)
		if !script {
			break
		}
		if err != nil {
			return fail("%sits #! line %v", of, err)
		}
		if scripts == maxScripts {
			return fail("%s is a script too: the kernel follows at most %d nested interpreters (exec fails with %v)", strings.TrimSuffix(of, ": "), maxScripts-1, unix.ELOOP)
		}
		lastScript, lastOf = file, of
		next, from := sb.interp, "from its #! line"
		if file != s.handler {
			from = "from the #! line of interpreter " + showPath(file)
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(s.dir, next)
			from += ", found from working_dir " + s.dir + " as " + showPath(next)
		}
		what := fmt.Sprintf("interpreter %s (%s)", showPath(sb.interp), from)
		if p := s.interpProblem(next, sb.interp); p != "" {
			return fail("%s%s", what, p)
		}
		if filepath.Base(next) == "env" {
			if w := s.envProblem(sb); w != "" {
				f.warns = append(f.warns, fmt.Errorf("handler %s: %s%s", s.handler, of, w))
			}
		}
		file, of = next, what+": "
	}
	if lastScript != "" && s.cred.Set && s.cred.Uid != 0 {
		if err := allowed(lastScript, s.cred, 0o4); err != nil {
			it := "it"
			if lastOf != "" {
				it = strings.TrimSuffix(lastOf, ": ")
			}
			return fail("user %s cannot read %s, and its interpreter %s must read it to run it: %v", s.cred.User, it, showPath(file), err)
		}
	}
	return f
}

// interpProblem says what keeps the kernel from executing the
// interpreter at p (written as asWritten) for s.cred, as a phrase to
// append after its name; "" when nothing does.
func (s scriptCheck) interpProblem(p, asWritten string) string {
	k := memoKey{a: p, b: asWritten, who: s.who}
	w, ok := s.memo.interps[k]
	if !ok {
		w = s.interpProblemOf(p, asWritten)
		s.memo.interps[k] = w
	}
	return w
}

// interpProblemOf is interpProblem, asking the system.
func (s scriptCheck) interpProblemOf(p, asWritten string) string {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if strings.HasSuffix(asWritten, "\r") {
			return ` does not exist (the line ends in "\r": the file has DOS line endings)`
		}
		return " does not exist"
	case err != nil:
		return ": " + unwrapPath(err).Error()
	case !fi.Mode().IsRegular():
		return " is not a regular file"
	}
	if w := s.execProblem(p, fi); w != "" {
		return w
	}
	if s.owners != nil {
		w, errs := trustProblems(p, *s.owners)
		if w == nil || len(errs) > 0 {
			return ": " + errs[0].Error()
		}
	}
	return ""
}

// execProblem says why s.cred cannot execute the regular file p, whose
// Stat is fi, as a phrase to append after its name; "" when it can.
func (s scriptCheck) execProblem(p string, fi fs.FileInfo) string {
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Sprintf(" is not executable (mode %04o)", fi.Mode().Perm())
	}
	if onNoexec(p) {
		return fmt.Sprintf(" is on a file system mounted noexec: exec fails with %v", unix.EACCES)
	}
	if err := canExec(p, s.cred); err != nil {
		return ": " + err.Error()
	}
	return ""
}

// envProblem checks the program that "#!/path/env ARG" runs, as env
// reads its one argument, and says why env will not find it; "" when it
// will or when Load cannot tell (an option other than -S, a variable
// assignment, quoting, a PATH from superd's own environment). It is a
// warning: env may be some other program, and may be given other
// arguments.
func (s scriptCheck) envProblem(sb shebang) string {
	line := "#!" + sb.interp
	if sb.hasArg {
		line += " " + sb.arg
	}
	line = strconv.Quote(line)
	prog, path, setsPath, ok := envProgram(sb)
	if !ok {
		return ""
	}
	if !setsPath {
		if !s.pathKnown && !strings.Contains(prog, "/") {
			return ""
		}
		path = s.envPath
	}
	if s.findProgram(prog, path) {
		return ""
	}
	split := ""
	if strings.ContainsAny(prog, " \t") {
		split = fmt.Sprintf(" (the kernel gives env the rest of the #! line as one argument: write \"#!%s -S %s\" to split it)", sb.interp, sb.arg)
	}
	if strings.Contains(prog, "/") {
		return fmt.Sprintf("%s: env finds no executable %q%s: it will fail at every connection", line, prog, split)
	}
	return fmt.Sprintf("%s: env finds no executable %q on the handler's PATH %s%s: it will fail at every connection", line, prog, path, split)
}

// envProgram is the program env runs when given sb.arg; setsPath when
// the line sets PATH= for it, then path is that value. ok is false when
// Load cannot tell.
func envProgram(sb shebang) (prog, path string, setsPath, ok bool) {
	if !sb.hasArg || sb.arg == "" {
		return "", "", false, false
	}
	rest, split := strings.CutPrefix(sb.arg, "-S")
	if !split {
		if strings.HasPrefix(sb.arg, "-") || strings.Contains(sb.arg, "=") {
			return "", "", false, false
		}
		return sb.arg, "", false, true
	}
	if strings.ContainsAny(rest, "\\\"'$#") {
		return "", "", false, false // env -S unquotes and expands: leave it to env
	}
	for _, w := range strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' || r == '\t' }) {
		switch {
		case strings.HasPrefix(w, "PATH="):
			path, setsPath = w[len("PATH="):], true
		case strings.Contains(w, "="):
		case strings.HasPrefix(w, "-"):
			return "", "", false, false
		default:
			return w, path, setsPath, true
		}
	}
	return "", "", false, false
}

// findProgram reports whether env, searching path (if prog has no
// slash) from s.dir, finds an executable prog, as execvp does: an empty
// PATH entry means the working folder.
func (s scriptCheck) findProgram(prog, path string) bool {
	k := memoKey{a: prog, b: path, c: s.dir, who: s.who}
	found, ok := s.memo.found[k]
	if !ok {
		found = s.findProgramOf(prog, path)
		s.memo.found[k] = found
	}
	return found
}

// findProgramOf is findProgram, asking the system.
func (s scriptCheck) findProgramOf(prog, path string) bool {
	var cands []string
	if strings.Contains(prog, "/") {
		cands = []string{prog}
	} else {
		for _, d := range strings.Split(path, ":") {
			cands = append(cands, filepath.Join(d, prog))
		}
	}
	for _, c := range cands {
		if !filepath.IsAbs(c) {
			c = filepath.Join(s.dir, c)
		}
		fi, err := os.Stat(c)
		if err == nil && fi.Mode().IsRegular() && s.execProblem(c, fi) == "" {
			return true
		}
	}
	return false
}
