package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// PermCheck selects the ownership and mode checks of Load: whoever can
// write services.toml or a handler can run commands as the handler's
// user, root included, so Load refuses files that others can write.
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

// unsafeFile explains why a file whose contents run as who (uid, gid)
// cannot be trusted, or returns nil. Root and uid may own it and write
// it; the group may write it when it is root's group or gid; nobody else
// may write it.
func unsafeFile(fi fs.FileInfo, uid, gid uint32, who string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cannot tell who owns it: refusing")
	}
	mode := fi.Mode().Perm()
	owners := "root"
	if uid != 0 {
		owners = "root or " + who
	}
	var why string
	switch {
	case st.Uid != 0 && st.Uid != uid:
		why = fmt.Sprintf("owned by uid %d, not by %s", st.Uid, owners)
	case mode&0o002 != 0:
		why = "writable by others"
	case mode&0o020 != 0 && st.Gid != 0 && st.Gid != gid:
		why = fmt.Sprintf("writable by group %d", st.Gid)
	default:
		return nil
	}
	return fmt.Errorf("mode %04o, %s: refusing (whoever can write it can run commands as %s)", mode, why, who)
}

// unsafeParents applies the rule of unsafeFile to every folder above
// path: whoever can write a folder can rename another file into its
// place. A sticky folder (/tmp) is fine: there only a file's owner may
// rename or remove it.
func unsafeParents(path string, uid, gid uint32, who string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return nil // the file's own check reports a missing path
		}
		if fi.Mode()&os.ModeSticky == 0 {
			if err := unsafeFile(fi, uid, gid, who); err != nil {
				return fmt.Errorf("folder %s: %w", dir, err)
			}
		}
		if dir == "/" {
			return nil
		}
	}
}

// checkHandler applies unsafeFile to the handler, for its own user.
func (b *builder) checkHandler(e Exec) {
	if !b.l.opts.checkPerms() || !b.sp.has("path") || b.sp.bad["user"] || b.sp.bad["group"] {
		return
	}
	uid, gid, who := uint32(0), uint32(0), "root"
	if e.Cred.Set {
		uid, gid, who = e.Cred.Uid, e.Cred.Gid, e.Cred.User
	}
	fi, err := os.Stat(e.Path)
	if err != nil {
		b.failf("path", "handler %s: %v", e.Path, unwrapPath(err))
		return
	}
	if err := unsafeFile(fi, uid, gid, who); err != nil {
		b.l.errs = append(b.l.errs, b.at("path", fmt.Errorf("handler %s: %w", e.Path, err)))
	}
	if err := unsafeParents(e.Path, uid, gid, who); err != nil {
		b.l.errs = append(b.l.errs, b.at("path", fmt.Errorf("handler %s: %w", e.Path, err)))
	}
	if err := canExec(e.Path, e.Cred); err != nil {
		b.l.errs = append(b.l.errs, b.at("path", fmt.Errorf("handler %s: %w", e.Path, err)))
	}
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
