package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// aclBytes encodes a POSIX access ACL as the kernel stores it in
// system.posix_acl_access: a version, then {tag, perm, id} entries.
func aclBytes(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// nobodyMayWrite is u::rw(x),u:65534:rw(x),g::r,m::rw(x),o::r: the mode
// still reads 0664 (or 0774) root:root.
func nobodyMayWrite(x uint32) []byte {
	const any = ^uint32(0)
	return aclBytes([3]uint32{1, 6 | x, any}, [3]uint32{2, 6 | x, 65534}, [3]uint32{4, 4, any}, [3]uint32{0x10, 6 | x, any}, [3]uint32{0x20, 4, any})
}

// TestCheckRefusesLinksAndACLs is the black-box regression test for the
// two root holes of the adversarial pass: `superd check` used to accept
// a root handler reached through a symlink into a folder that nobody
// owns, and files that an ACL lets nobody write.
func TestCheckRefusesLinksAndACLs(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(dir, 0o755))
	userdir, bindir := filepath.Join(dir, "userdir"), filepath.Join(dir, "bin")
	must(os.Mkdir(userdir, 0o755))
	must(os.Chown(userdir, 65534, 65534))
	must(os.Mkdir(bindir, 0o755))
	script := []byte("#!/bin/sh\necho ok\n")
	must(os.WriteFile(filepath.Join(userdir, "h"), script, 0o755))
	must(os.Symlink(filepath.Join(userdir, "h"), filepath.Join(bindir, "h")))
	safe := filepath.Join(bindir, "safe")
	must(os.WriteFile(safe, script, 0o755))

	writeConfig := func(path, handler string) {
		t.Helper()
		cfg := "[services.s]\nport = 7\naddress = \"127.0.0.1\"\nuser = \"root\"\npath = \"" + handler + "\"\n"
		must(os.WriteFile(path, []byte(cfg), 0o644))
	}
	check := func(config string) (string, int) {
		t.Helper()
		_, stderr, status := superdCmd(t, "check", "--config", config)
		return stderr, status
	}

	t.Run("handler through a symlink", func(t *testing.T) {
		cfg := filepath.Join(dir, "link.toml")
		writeConfig(cfg, filepath.Join(bindir, "h"))
		stderr, status := check(cfg)
		want := "symlink " + filepath.Join(bindir, "h") + " -> " + filepath.Join(userdir, "h") + ": folder " + userdir + ": "
		if status != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "owned by uid 65534") {
			t.Errorf("check exit %d, stderr:\n%s\nwant exit 1 and a message containing %q", status, stderr, want)
		}
	})
	t.Run("config file through a symlink", func(t *testing.T) {
		real := filepath.Join(userdir, "services.toml")
		writeConfig(real, safe)
		link := filepath.Join(dir, "via-link.toml")
		must(os.Symlink(real, link))
		stderr, status := check(link)
		if status != 1 || !strings.Contains(stderr, "symlink "+link+" -> "+real) || !strings.Contains(stderr, "folder "+userdir) {
			t.Errorf("check exit %d, stderr:\n%s\nwant exit 1 naming the link and %s", status, stderr, userdir)
		}
	})
	t.Run("ACL on services.toml", func(t *testing.T) {
		cfg := filepath.Join(dir, "acl.toml")
		writeConfig(cfg, safe)
		must(unix.Setxattr(cfg, "system.posix_acl_access", nobodyMayWrite(0), 0))
		if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o664 {
			t.Fatalf("mode with the ACL: %v, %v; want 0664", fi.Mode(), err)
		}
		stderr, status := check(cfg)
		if status != 1 || !strings.Contains(stderr, "ACL grants write to user 65534") {
			t.Errorf("check exit %d, stderr:\n%s\nwant exit 1 and the ACL named", status, stderr)
		}
	})
	t.Run("ACL on the handler", func(t *testing.T) {
		h := filepath.Join(bindir, "acl-handler")
		must(os.WriteFile(h, script, 0o755))
		must(unix.Setxattr(h, "system.posix_acl_access", nobodyMayWrite(1), 0))
		cfg := filepath.Join(dir, "acl-handler.toml")
		writeConfig(cfg, h)
		stderr, status := check(cfg)
		if status != 1 || !strings.Contains(stderr, "handler "+h) || !strings.Contains(stderr, "ACL grants write to user 65534") {
			t.Errorf("check exit %d, stderr:\n%s\nwant exit 1 naming the handler and the ACL", status, stderr)
		}
	})
	t.Run("safe handler still passes", func(t *testing.T) {
		cfg := filepath.Join(dir, "safe.toml")
		writeConfig(cfg, safe)
		if stderr, status := check(cfg); status != 0 {
			t.Errorf("check exit %d, stderr:\n%s\nwant 0", status, stderr)
		}
	})
}
