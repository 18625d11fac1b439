package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// PermCheck selects the ownership and mode checks of Load: whoever can
// write services.toml or a handler can run commands as the handler's
// user, root included, so Load refuses files that others can write.
// Writable means by mode bits or by a POSIX ACL entry, and counts for
// the file where its symlinks really lead, for every folder on the way
// and for every folder holding one of those links.
type PermCheck int

const (
	// PermsAuto checks when Options.Euid is 0, the only case where a
	// writable file can become someone else's command.
	PermsAuto PermCheck = iota
	// PermsOff never checks.
	PermsOff
	// PermsOn always checks, as if superd ran as root.
	PermsOn
)

// checkPerms reports whether the ownership and mode checks apply.
func (o Options) checkPerms() bool {
	switch o.Perms {
	case PermsOn:
		return true
	case PermsOff:
		return false
	}
	return o.Euid == 0
}

// runAs is whose commands a checked file's contents become: root for
// the config files, the handler's user and group for a handler.
type runAs struct {
	uid, gid uint32
	who      string // the user's name, for messages
}

// asRoot is runAs for files whose contents root acts on.
func asRoot() runAs { return runAs{who: "root"} }

// userOK reports whether uid may own or write a file run as r: root
// always may, and so may r's own user.
func (r runAs) userOK(uid uint32) bool { return uid == 0 || uid == r.uid }

// groupOK reports whether members of gid may write a file run as r:
// root's group, or r's own group.
func (r runAs) groupOK(gid uint32) bool { return gid == 0 || gid == r.gid }

// owners names who may own a file run as r.
func (r runAs) owners() string {
	if r.uid == 0 {
		return "root"
	}
	return "root or " + r.who
}

// unsafeFile explains why a file whose contents run as r cannot be
// trusted, or returns nil. Root and r's user may own it and write it;
// the group may write it when it is root's group or r's; nobody else
// may write it, by mode bits or by an ACL entry. entries is the file's
// access ACL, nil when it has none.
func unsafeFile(fi fs.FileInfo, entries []aclEntry, r runAs) error {
	return judge(fi, entries, r, false)
}

// judge is unsafeFile; ownerOnly skips the write rules, for a sticky
// folder.
func judge(fi fs.FileInfo, entries []aclEntry, r runAs, ownerOnly bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cannot tell who owns it: refusing")
	}
	mode := fi.Mode().Perm()
	var why string
	switch {
	case !r.userOK(st.Uid):
		why = fmt.Sprintf("owned by uid %d, not by %s", st.Uid, r.owners())
	case ownerOnly:
	case entries != nil:
		why = aclWriter(entries, st.Gid, r)
	case mode&0o002 != 0:
		why = "writable by others"
	case mode&0o020 != 0 && !r.groupOK(st.Gid):
		why = fmt.Sprintf("writable by group %d", st.Gid)
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("mode %04o, %s: refusing (whoever can write it can run commands as %s)", mode, why, r.who)
}

// maxLinks is how many symlinks one resolution may follow, as the
// kernel's limit (MAXSYMLINKS) before ELOOP.
const maxLinks = 40

// symlink is one symbolic link met while resolving a path.
type symlink struct {
	path   string      // where the link is; every folder above it is resolved
	target string      // what the link says, as readlink returns it
	fi     fs.FileInfo // the link's own Lstat, for its owner
}

// String shows the link as ls -l does.
func (l symlink) String() string { return l.path + " -> " + l.target }

// folderUse is a folder in which a resolution looked a name up: whoever
// can write it decides what that name is.
type folderUse struct {
	dir string
	// via is how many of walk.links had been followed when the folder
	// was first used: the links that led to it.
	via int
	// held is 1 + the index in walk.links of a link found in the folder;
	// 0 when none was.
	held int
}

// walk is how the kernel reaches a path, found component by component
// as it does (physical "..", relative links against the link's folder,
// absolute links from "/"), so that every link on the way is known.
type walk struct {
	final   string      // the resolved path: absolute, clean, no link in it
	fi      fs.FileInfo // Lstat of final
	links   []symlink   // in the order followed
	folders []folderUse // in the order first used, each once
}

// resolve walks path (relative to the current folder unless absolute).
// Its error is the bare errno (as os.Stat's would read once the path is
// dropped) when no link was followed; otherwise it names the links and
// the name that failed.
//
// Every folder of the resolved path is among w.folders: whenever the
// walk stands in a folder, every folder above it has had a name looked
// up in it (the name leading down, or a ".." came up from below).
func resolve(path string) (*walk, error) {
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("cannot find the current folder: %w", err)
		}
		path = wd + "/" + path
	}
	w := &walk{}
	index := map[string]int{} // folder -> its place in w.folders
	cur := "/"
	rest := strings.Split(path, "/")
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		i, ok := index[cur]
		if !ok {
			i = len(w.folders)
			index[cur] = i
			w.folders = append(w.folders, folderUse{dir: cur, via: len(w.links)})
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return nil, w.fail(next, unwrapPath(err))
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.IsDir() && len(rest) > 0 {
				return nil, w.fail(next, unix.ENOTDIR)
			}
			cur = next
			continue
		}
		if len(w.links) == maxLinks {
			return nil, fmt.Errorf("symlink %s: %w (more than %d symlinks on the way)", w.links[0], unix.ELOOP, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return nil, w.fail(next, unwrapPath(err))
		}
		if target == "" {
			return nil, w.fail(next, unix.ENOENT) // as the kernel treats an empty link
		}
		w.links = append(w.links, symlink{path: next, target: target, fi: fi})
		if w.folders[i].held == 0 {
			w.folders[i].held = len(w.links)
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	fi, err := os.Lstat(cur)
	if err != nil {
		return nil, w.fail(cur, unwrapPath(err))
	}
	w.final, w.fi = cur, fi
	return w, nil
}

// fail reports errno at name.
func (w *walk) fail(name string, errno error) error {
	if len(w.links) == 0 {
		return errno
	}
	return fmt.Errorf("%s%s: %w", w.chain(len(w.links)), name, errno)
}

// chain is the "symlink A -> B: " prefix of messages for the first n
// links followed.
func (w *walk) chain(n int) string {
	var b strings.Builder
	for _, l := range w.links[:n] {
		fmt.Fprintf(&b, "symlink %s: ", l)
	}
	return b.String()
}

// about is the prefix of messages about the resolved file itself: empty
// when the path as written has no link, else the links and the file.
func (w *walk) about() string {
	if len(w.links) == 0 {
		return ""
	}
	return w.chain(len(w.links)) + "file " + w.final + ": "
}

// unsafeWay applies unsafeFile to every folder the walk used: whoever
// can write one can rename another file or link into its place. A
// sticky folder (/tmp) is fine if root or r's user owns it: there only
// a name's owner (or the folder's) may rename or remove it, so a link in
// a sticky folder must be owned by root or r's user too. It returns the
// first problem, in the order the kernel meets them.
func (w *walk) unsafeWay(r runAs) error {
	for _, u := range w.folders {
		prefix := w.chain(u.via)
		if u.held > 0 {
			prefix = w.chain(u.held)
		}
		fi, err := os.Lstat(u.dir)
		if err == nil && !fi.IsDir() {
			err = errors.New("no longer a folder")
		}
		var entries []aclEntry
		if err == nil {
			entries, err = pathACL(u.dir)
		}
		if err == nil {
			err = judge(fi, entries, r, fi.Mode()&fs.ModeSticky != 0)
		}
		if err != nil {
			return fmt.Errorf("%sfolder %s: %w", prefix, u.dir, unwrapPath(err))
		}
	}
	for i, l := range w.links {
		dir := filepath.Dir(l.path)
		fi, err := os.Lstat(dir)
		if err != nil {
			return fmt.Errorf("%sfolder %s: %w", w.chain(i+1), dir, unwrapPath(err))
		}
		st, ok := l.fi.Sys().(*syscall.Stat_t)
		switch {
		case fi.Mode()&fs.ModeSticky == 0:
		case !ok:
			return fmt.Errorf("%scannot tell who owns it: refusing", w.chain(i+1))
		case !r.userOK(st.Uid):
			return fmt.Errorf("%sowned by uid %d in sticky folder %s, not by %s: refusing (whoever can replace it can run commands as %s)",
				w.chain(i+1), st.Uid, dir, r.owners(), r.who)
		}
	}
	return nil
}

// unsafeConfig checks a config file that superd running as root reads:
// f is the open file and fi its Stat. The file judged is f itself; the
// path is then resolved and its folders and links judged, and the
// resolved file must be f (else it changed in between).
func unsafeConfig(path string, f *os.File, fi fs.FileInfo) []error {
	r := asRoot()
	var errs []error
	entries, err := fileACL(f)
	if err == nil {
		err = unsafeFile(fi, entries, r)
	}
	w, werr := resolve(path)
	if werr != nil {
		if err != nil {
			errs = append(errs, err)
		}
		return append(errs, fmt.Errorf("cannot resolve its path: %w", werr))
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("%s%w", w.about(), err))
	}
	if !os.SameFile(fi, w.fi) {
		errs = append(errs, fmt.Errorf("%sfile %s is not the file opened (it changed meanwhile): refusing", w.chain(len(w.links)), w.final))
	}
	if err := w.unsafeWay(r); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// fileACL reads the access ACL of an open file, so that the ACL judged
// belongs to the file read.
func fileACL(f *os.File) ([]aclEntry, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var entries []aclEntry
	var aerr error
	err = rc.Control(func(fd uintptr) {
		entries, aerr = readACL(func(dest []byte) (int, error) { return unix.Fgetxattr(int(fd), aclXattr, dest) })
	})
	if err != nil {
		return nil, err
	}
	return entries, aerr
}

// checkHandler applies unsafeFile to the handler, its folders and the
// links on its way, for its own user. Thousands of services may run the
// same program as the same user: the walk is made once per Load for
// each program and identity, and its findings placed at each service.
func (b *builder) checkHandler(e Exec) {
	if !b.l.opts.checkPerms() || !b.sp.has("path") || b.sp.bad["user"] || b.sp.bad["group"] {
		return
	}
	k := handlerKey{path: e.Path, user: e.Cred.User, set: e.Cred.Set, uid: e.Cred.Uid, gid: e.Cred.Gid,
		groups: fmt.Sprint(e.Cred.Groups)}
	errs, ok := b.l.handlers[k]
	if !ok {
		errs = handlerProblems(e.Path, e.Cred)
		if b.l.handlers == nil {
			b.l.handlers = map[handlerKey][]error{}
		}
		b.l.handlers[k] = errs
	}
	for _, err := range errs {
		b.l.errs = append(b.l.errs, b.at("path", err))
	}
}

// handlerKey is what the checks of a handler depend on, besides the
// files: the program and the identity it runs as.
type handlerKey struct {
	path, user string
	set        bool
	uid, gid   uint32
	groups     string // Cred.Groups, formatted: a slice is not comparable
}

// handlerProblems is what checkHandler finds wrong with the handler at
// path run as c, in the order found. The errors are shared by every
// service with the same handler and identity, so none is an *Error
// (which report would modify).
func handlerProblems(path string, c Cred) []error {
	w, findings := trustProblems(path, runAsOf(c))
	if w == nil {
		return []error{fmt.Errorf("handler %s: %v", path, findings[0])}
	}
	var errs []error
	report := func(err error) {
		errs = append(errs, fmt.Errorf("handler %s: %w", path, err))
	}
	for _, err := range findings {
		report(err)
	}
	if err := canExec(path, c); err != nil {
		report(err)
	}
	return errs
}

// runAsOf is whose commands a handler run as c executes.
func runAsOf(c Cred) runAs {
	if c.Set {
		return runAs{uid: c.Uid, gid: c.Gid, who: c.User}
	}
	return asRoot()
}

// trustProblems applies unsafeFile to the file at path (where its links
// lead), to its folders and to the links on its way, for a file whose
// contents run as r: a handler, or a handler's interpreter. When path
// cannot be resolved, w is nil and the one error says why.
func trustProblems(path string, r runAs) (w *walk, errs []error) {
	w, err := resolve(path)
	if err != nil {
		return nil, []error{err}
	}
	entries, err := pathACL(w.final)
	if err == nil {
		err = unsafeFile(w.fi, entries, r)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("%s%w", w.about(), err))
	}
	if err := w.unsafeWay(r); err != nil {
		errs = append(errs, err)
	}
	return w, errs
}

// canExec tells whether the handler's user can reach and execute path,
// so that a handler in a folder only root may enter (a checkout under
// /root, say) fails in `superd check`, not at the first connection.
func canExec(path string, c Cred) error {
	if !c.Set || c.Uid == 0 {
		return nil
	}
	dir := "/"
	for _, part := range strings.Split(filepath.Dir(path), "/") {
		if part == "" {
			continue
		}
		dir = filepath.Join(dir, part)
		if err := allowed(dir, c, 0o1); err != nil {
			return fmt.Errorf("user %s cannot enter %s: %w", c.User, dir, err)
		}
	}
	if err := allowed(path, c, 0o1); err != nil {
		return fmt.Errorf("user %s cannot execute it: %w", c.User, err)
	}
	return nil
}

// allowed checks the permission bits (a mask of the "other" triplet:
// 1 = execute/search) of name for c, as the kernel does: owner bits for
// the owner, else group bits for a member, else other bits.
func allowed(name string, c Cred, want os.FileMode) error {
	fi, err := os.Stat(name)
	if err != nil {
		return unwrapPath(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode().Perm()
	bits := mode & 0o7
	switch {
	case st.Uid == c.Uid:
		bits = mode >> 6 & 0o7
	case st.Gid == c.Gid || slices.Contains(c.Groups, st.Gid):
		bits = mode >> 3 & 0o7
	}
	if bits&want != want {
		return fmt.Errorf("mode %04o, owner %d, group %d", mode, st.Uid, st.Gid)
	}
	return nil
}

// RootExecutableProblems is what makes the program at path unfit to be
// run as root: writable by another user (by mode bits or ACL), itself,
// a folder on its way or a symlink's folder, as Load judges a handler
// that runs as root. A binary upgrade runs the binary at superd's path
// as root, so whoever could replace it would own the host.
func RootExecutableProblems(path string) []error {
	_, errs := trustProblems(path, asRoot())
	return errs
}
