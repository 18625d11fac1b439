package config

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// needRoot skips tests that chown files to another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: chowning test files to another user needs root (CI runs these tests as root)")
	}
}

// chown changes a test file's owner and group.
func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

const validText = "[services.s]\npath = \"handler\"\nuser = \"nobody\"\nport = 7\n"

func TestConfigFilePerms(t *testing.T) {
	needRoot(t)
	nobody := credOf(t, "nobody")
	uid, gid := int(nobody.Uid), int(nobody.Gid)
	tests := []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		want     string // "" when the file is accepted
	}{
		{"root 0644", 0o644, 0, 0, ""},
		{"root 0600", 0o600, 0, 0, ""},
		{"group-writable, group root", 0o664, 0, 0, ""},
		{"world-writable", 0o666, 0, 0, "mode 0666, writable by others: refusing (whoever can write it can run commands as root)"},
		{"group-writable, other group", 0o664, 0, gid, "mode 0664, writable by group " + itoa(gid) + ": refusing"},
		{"owned by nobody", 0o644, uid, 0, "mode 0644, owned by uid " + itoa(uid) + ", not by root: refusing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			path := writeFile(t, dir, "services.toml", validText, tt.mode)
			chown(t, path, tt.uid, tt.gid)
			_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
			checkPermResult(t, err, path, tt.want)
		})
	}
}

// checkPermResult checks that err is nil when want is "", else exactly
// one error on file with want in it.
func checkPermResult(t *testing.T, err error, file, want string) {
	t.Helper()
	errs := loadErrors(t, err)
	switch {
	case want == "" && err != nil:
		t.Fatalf("got %v, want no error", err)
	case want == "":
		return
	case len(errs) != 1:
		t.Fatalf("got %d errors, want 1: %v", len(errs), err)
	case !strings.Contains(errs[0].Error(), want) || errs[0].File != file:
		t.Errorf("got %v\nwant an error on %s containing %q", errs[0], file, want)
	}
}

func TestIncludedFilePerms(t *testing.T) {
	needRoot(t)
	dir := configDir(t)
	inc := writeFile(t, dir, "d/x.toml", strings.Replace(validText, `"handler"`, `"../handler"`, 1), 0o666)
	path := writeFile(t, dir, "services.toml", "[superd]\ninclude = [\"d/*.toml\"]\n", 0o644)
	_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
	checkPermResult(t, err, inc, "mode 0666, writable by others")
}

func TestHandlerPerms(t *testing.T) {
	needRoot(t)
	nobody := credOf(t, "nobody")
	uid, gid := int(nobody.Uid), int(nobody.Gid)
	tests := []struct {
		name     string
		user     string
		mode     os.FileMode
		uid, gid int
		want     string
	}{
		{"root's handler", "nobody", 0o755, 0, 0, ""},
		{"the user's own handler", "nobody", 0o755, uid, gid, ""},
		{"group-writable by the user's group", "nobody", 0o775, 0, gid, ""},
		{"world-writable", "nobody", 0o777, 0, 0, "mode 0777, writable by others: refusing (whoever can write it can run commands as nobody)"},
		{"owned by another user", "root", 0o755, uid, 0, "owned by uid " + itoa(uid) + ", not by root: refusing (whoever can write it can run commands as root)"},
		{"group-writable by another group", "root", 0o775, 0, gid, "writable by group " + itoa(gid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			h := filepath.Join(dir, "handler")
			if err := os.Chmod(h, tt.mode); err != nil {
				t.Fatal(err)
			}
			chown(t, h, tt.uid, tt.gid)
			text := strings.Replace(validText, `"nobody"`, `"`+tt.user+`"`, 1)
			path := writeFile(t, dir, "services.toml", text, 0o644)
			_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
			checkPermResult(t, err, path, tt.want)
			if tt.want != "" && !strings.Contains(err.Error(), `key "path": handler `+h+": ") {
				t.Errorf("error %v does not name the handler", err)
			}
		})
	}
}

// TestPermsAutoFollowsEuid needs no root: a world-writable file fails
// the check whoever owns it.
func TestPermsAutoFollowsEuid(t *testing.T) {
	dir := configDir(t)
	path := writeFile(t, dir, "services.toml", "[services.e]\nbuiltin = \"echo\"\nport = 7000\n", 0o666)
	if _, err := (Options{Euid: 0}).Load(path); err == nil {
		t.Error("Euid 0: a world-writable config loaded")
	}
	if _, err := (Options{Euid: 1000}).Load(path); err != nil {
		t.Errorf("Euid 1000: %v (only root needs the check)", err)
	}
	if _, err := (Options{Euid: 0, Perms: PermsOff}).Load(path); err != nil {
		t.Errorf("PermsOff: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestHandlerUnreachable(t *testing.T) {
	needRoot(t)
	dir := configDir(t)
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, private, "handler", "#!/bin/sh\n", 0o755)
	path := writeFile(t, dir, "services.toml", "[services.s]\npath = \"private/handler\"\nuser = \"nobody\"\nport = 7\n", 0o644)
	_, err := Options{Euid: 0}.Load(path)
	if err == nil || !strings.Contains(err.Error(), "user nobody cannot enter "+private) {
		t.Fatalf("got %v, want an error saying nobody cannot enter %s", err, private)
	}
	// root needs no search permission.
	path = writeFile(t, dir, "root.toml", "[services.s]\npath = \"private/handler\"\nuser = \"root\"\nport = 7\n", 0o644)
	if _, err := (Options{Euid: 0}).Load(path); err != nil {
		t.Fatalf("root's handler: %v", err)
	}
}

func TestHandlerFolderPerms(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		mode os.FileMode
		want string // "" when accepted
	}{
		{"private folder", 0o755, ""},
		{"world-writable folder", 0o777, "writable by others"},
		{"sticky world-writable folder, as /tmp", os.ModeSticky | 0o777, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			sub := filepath.Join(dir, "bin")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, sub, "handler", "#!/bin/sh\n", 0o755)
			if err := os.Chmod(sub, tt.mode); err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, dir, "services.toml", "[services.s]\npath = \"bin/handler\"\nuser = \"root\"\nport = 7\n", 0o644)
			_, err := Options{Euid: 0}.Load(path)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "folder "+sub) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error naming folder %s: %s", err, sub, tt.want)
			}
		})
	}
}

// aclBytes encodes an ACL written as setfacl prints it
// ("u::rw,u:65534:rw,g::r,m::rw,o::r") in the binary form of
// system.posix_acl_access. Ids are numeric; entries stay in the order
// written, so a test can also write ones the kernel refuses.
func aclBytes(t testing.TB, text string) []byte {
	t.Helper()
	tags := map[string]uint16{"u": 0x01, "g": 0x04, "m": 0x10, "o": 0x20}
	b := binary.LittleEndian.AppendUint32(nil, 0x0002)
	for _, e := range strings.Split(text, ",") {
		f := strings.Split(e, ":")
		if len(f) != 3 {
			t.Fatalf("ACL entry %q is not tag:id:perm", e)
		}
		tag, ok := tags[f[0]]
		if !ok {
			t.Fatalf("ACL entry %q: unknown tag", e)
		}
		id := uint32(0xffffffff)
		if f[1] != "" {
			n, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				t.Fatalf("ACL entry %q: %v", e, err)
			}
			id = uint32(n)
			tag <<= 1 // u -> USER, g -> GROUP
		}
		var perm uint16
		for _, c := range f[2] {
			perm |= map[rune]uint16{'r': 4, 'w': 2, 'x': 1, '-': 0}[c]
		}
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

// setACL gives path the access ACL text, as setfacl --set would (which
// the test machines lack). The kernel also sets the mode's group bits
// to the mask.
func setACL(t *testing.T, path, text string) {
	t.Helper()
	if err := unix.Setxattr(path, "system.posix_acl_access", aclBytes(t, text), 0); err != nil {
		t.Fatalf("setting ACL %s on %s: %v", text, path, err)
	}
}

// mkSymlink makes a symbolic link at dir/name saying target.
func mkSymlink(t *testing.T, dir, name, target string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// mkdir makes dir/name with exactly mode, owned by uid and gid.
func mkdir(t *testing.T, dir, name string, mode os.FileMode, uid, gid int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	chown(t, p, uid, gid)
	return p
}

// TestHandlerSymlinks: the folders of the resolved path, and those
// holding each link on the way, are judged, and the error names the
// link and the folder.
func TestHandlerSymlinks(t *testing.T) {
	needRoot(t)
	nobody := credOf(t, "nobody")
	uid, gid := int(nobody.Uid), int(nobody.Gid)
	ownedByNobody := "mode 0755, owned by uid " + itoa(uid) + ", not by root: refusing (whoever can write it can run commands as root)"
	// userDir makes dir/userdir, owned by nobody, holding the handler h
	// (root's, 0755): nobody can rename h away and write another.
	userDir := func(t *testing.T, dir string) string {
		d := mkdir(t, dir, "userdir", 0o755, uid, gid)
		writeFile(t, d, "h", "#!/bin/sh\n", 0o755)
		return d
	}
	tests := []struct {
		name string
		user string
		// setup builds the files in dir and returns the handler's path
		// as the config writes it, and the texts the error must hold
		// (none when the handler is accepted).
		setup func(t *testing.T, dir string) (string, []string)
	}{
		{"link to a file in a folder nobody owns", "root", func(t *testing.T, dir string) (string, []string) {
			u := userDir(t, dir)
			l := mkSymlink(t, dir, "bin/h", filepath.Join(u, "h"))
			return "bin/h", []string{"symlink " + l + " -> " + u + "/h: folder " + u + ": " + ownedByNobody}
		}},
		{"relative link", "root", func(t *testing.T, dir string) (string, []string) {
			u := userDir(t, dir)
			l := mkSymlink(t, dir, "bin/h", "../userdir/h")
			return "bin/h", []string{"symlink " + l + " -> ../userdir/h: folder " + u + ": " + ownedByNobody}
		}},
		{"chain of links", "root", func(t *testing.T, dir string) (string, []string) {
			u := userDir(t, dir)
			l1 := mkSymlink(t, dir, "bin/h", "h2")
			l2 := mkSymlink(t, dir, "bin/h2", "../lib/h3")
			l3 := mkSymlink(t, dir, "lib/h3", filepath.Join(u, "h"))
			return "bin/h", []string{"symlink " + l1 + " -> h2: symlink " + l2 + " -> ../lib/h3: symlink " + l3 + " -> " + u + "/h: folder " + u + ": " + ownedByNobody}
		}},
		{"link as an intermediate folder", "root", func(t *testing.T, dir string) (string, []string) {
			u := userDir(t, dir)
			l := mkSymlink(t, dir, "bin", "userdir")
			return "bin/h", []string{"symlink " + l + " -> userdir: folder " + u + ": " + ownedByNobody}
		}},
		{"link living in a folder nobody owns", "root", func(t *testing.T, dir string) (string, []string) {
			writeFile(t, dir, "safe/h", "#!/bin/sh\n", 0o755)
			d := mkdir(t, dir, "drop", 0o755, uid, gid)
			l := mkSymlink(t, d, "h", filepath.Join(dir, "safe/h"))
			return "drop/h", []string{"symlink " + l + " -> " + dir + "/safe/h: folder " + d + ": " + ownedByNobody}
		}},
		{"link in a world-writable folder", "root", func(t *testing.T, dir string) (string, []string) {
			writeFile(t, dir, "safe/h", "#!/bin/sh\n", 0o755)
			d := mkdir(t, dir, "drop", 0o777, 0, 0)
			l := mkSymlink(t, d, "h", "../safe/h")
			return "drop/h", []string{"symlink " + l + " -> ../safe/h: folder " + d + ": mode 0777, writable by others: refusing"}
		}},
		{"link to a file nobody owns", "root", func(t *testing.T, dir string) (string, []string) {
			f := writeFile(t, dir, "safe/h", "#!/bin/sh\n", 0o755)
			chown(t, f, uid, gid)
			l := mkSymlink(t, dir, "bin/h", "../safe/h")
			return "bin/h", []string{"symlink " + l + " -> ../safe/h: file " + f + ": " + ownedByNobody}
		}},
		{"link owned by nobody in a sticky folder", "root", func(t *testing.T, dir string) (string, []string) {
			writeFile(t, dir, "safe/h", "#!/bin/sh\n", 0o755)
			d := mkdir(t, dir, "tmp", os.ModeSticky|0o777, 0, 0)
			l := mkSymlink(t, d, "h", "../safe/h")
			if err := os.Lchown(l, uid, gid); err != nil {
				t.Fatal(err)
			}
			return "tmp/h", []string{"symlink " + l + " -> ../safe/h: owned by uid " + itoa(uid) + " in sticky folder " + d + ", not by root: refusing"}
		}},
		{"sticky folder owned by nobody", "root", func(t *testing.T, dir string) (string, []string) {
			// Its owner may remove anything in it, or drop the sticky bit.
			d := mkdir(t, dir, "tmp", os.ModeSticky|0o777, uid, gid)
			writeFile(t, d, "h", "#!/bin/sh\n", 0o755)
			return "tmp/h", []string{"folder " + d + ": mode 0777, owned by uid " + itoa(uid) + ", not by root: refusing"}
		}},
		{"safe links, as /bin -> usr/bin", "root", func(t *testing.T, dir string) (string, []string) {
			writeFile(t, dir, "usr/bin/h", "#!/bin/sh\n", 0o755)
			mkSymlink(t, dir, "bin", "usr/bin")
			mkSymlink(t, dir, "usr/bin/h2", "h")
			mkSymlink(t, dir, "etc/alternatives/h", filepath.Join(dir, "bin/h2"))
			return "etc/alternatives/h", nil
		}},
		{"root's link in a root-owned sticky folder", "root", func(t *testing.T, dir string) (string, []string) {
			writeFile(t, dir, "safe/h", "#!/bin/sh\n", 0o755)
			d := mkdir(t, dir, "tmp", os.ModeSticky|0o777, 0, 0)
			mkSymlink(t, d, "h", "../safe/h")
			return "tmp/h", nil
		}},
		{"link into the handler user's own folder", "nobody", func(t *testing.T, dir string) (string, []string) {
			userDir(t, dir)
			mkSymlink(t, dir, "bin/h", "../userdir/h")
			return "bin/h", nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			h, wants := tt.setup(t, dir)
			path := writeFile(t, dir, "services.toml", "[services.s]\npath = \""+h+"\"\nuser = \""+tt.user+"\"\nport = 7\n", 0o644)
			_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
			if len(wants) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			errs := loadErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1: %v", len(errs), err)
			}
			prefix := `key "path": handler ` + filepath.Join(dir, h) + ": "
			for _, want := range wants {
				if !strings.Contains(errs[0].Error(), want) || !strings.Contains(errs[0].Error(), prefix) {
					t.Errorf("got %v\nwant an error with %q and %q", errs[0], prefix, want)
				}
			}
		})
	}
}

// TestConfigFileSymlinks: a config file, or an included file, reached
// through a link is judged where it really is.
func TestConfigFileSymlinks(t *testing.T) {
	needRoot(t)
	nobody := credOf(t, "nobody")
	uid, gid := int(nobody.Uid), int(nobody.Gid)
	t.Run("main file in a folder nobody owns", func(t *testing.T) {
		dir := configDir(t)
		u := mkdir(t, dir, "userdir", 0o755, uid, gid)
		writeFile(t, u, "services.toml", strings.Replace(validText, `"handler"`, `"../handler"`, 1), 0o644)
		l := mkSymlink(t, dir, "etc/services.toml", "../userdir/services.toml")
		_, err := Options{Euid: 0, Perms: PermsOn}.Load(l)
		checkPermResult(t, err, l, "symlink "+l+" -> ../userdir/services.toml: folder "+u+": mode 0755, owned by uid "+itoa(uid)+", not by root: refusing (whoever can write it can run commands as root)")
	})
	t.Run("main file owned by nobody", func(t *testing.T) {
		dir := configDir(t)
		f := writeFile(t, dir, "real/services.toml", strings.Replace(validText, `"handler"`, `"../handler"`, 1), 0o644)
		chown(t, f, uid, gid)
		l := mkSymlink(t, dir, "etc", "real")
		p := filepath.Join(l, "services.toml")
		_, err := Options{Euid: 0, Perms: PermsOn}.Load(p)
		checkPermResult(t, err, p, "symlink "+l+" -> real: file "+f+": mode 0644, owned by uid "+itoa(uid))
	})
	t.Run("safe link", func(t *testing.T) {
		dir := configDir(t)
		// The handler's path is absolute: a relative one would be
		// taken from the folder of the path as given.
		writeFile(t, dir, "real/services.toml", strings.Replace(validText, `"handler"`, `"`+dir+`/handler"`, 1), 0o644)
		l := mkSymlink(t, dir, "services.toml", "real/services.toml")
		_, err := Options{Euid: 0, Perms: PermsOn}.Load(l)
		checkPermResult(t, err, l, "")
	})
	t.Run("included file in a folder nobody owns", func(t *testing.T) {
		dir := configDir(t)
		u := mkdir(t, dir, "userdir", 0o755, uid, gid)
		writeFile(t, u, "x.toml", strings.Replace(validText, `"handler"`, `"../handler"`, 1), 0o644)
		inc := mkSymlink(t, dir, "d/x.toml", "../userdir/x.toml")
		path := writeFile(t, dir, "services.toml", "[superd]\ninclude = [\"d/*.toml\"]\n", 0o644)
		_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
		checkPermResult(t, err, inc, "symlink "+inc+" -> ../userdir/x.toml: folder "+u+": mode 0755, owned by uid "+itoa(uid))
	})
}

// TestACLPerms: an ACL entry granting write is judged like the mode
// bits, on the config file, on a handler and on their folders.
func TestACLPerms(t *testing.T) {
	needRoot(t)
	nobody := credOf(t, "nobody")
	uid, gid := int(nobody.Uid), int(nobody.Gid)
	n, g := itoa(uid), itoa(gid)
	asRootMsg := ": refusing (whoever can write it can run commands as root)"
	tests := []struct {
		name   string
		target string // "config", "handler", "config folder" or "handler folder"
		user   string // the handler's user
		acl    string
		gid    int    // the target's group
		want   string // "" when accepted
	}{
		{"config: nobody may write", "config", "nobody", "u::rw,u:" + n + ":rw,g::r,m::rw,o::r", 0,
			"mode 0664, ACL grants write to user " + n + asRootMsg},
		{"config: nobody may read", "config", "nobody", "u::rw,u:" + n + ":r,g::r,m::r,o::r", 0, ""},
		{"config: the mask takes nobody's write away", "config", "nobody", "u::rw,u:" + n + ":rw,g::r,m::r,o::r", 0, ""},
		{"config: root may write", "config", "nobody", "u::rw,u:0:rw,g::r,m::rw,o::r", 0, ""},
		{"config: a named group may write", "config", "nobody", "u::rw,g::r,g:" + g + ":rw,m::rw,o::r", 0,
			"mode 0664, ACL grants write to group " + g + asRootMsg},
		{"config: the owning group may only read, though the mode shows the mask's write", "config", "nobody",
			"u::rw,u:0:rw,g::r,m::rw,o::r", gid, ""},
		{"config: the owning group may write", "config", "nobody", "u::rw,u:0:r,g::rw,m::rw,o::r", gid,
			"mode 0664, writable by group " + g + asRootMsg},
		{"handler: nobody may write, run as root", "handler", "root", "u::rwx,u:" + n + ":rwx,g::rx,m::rwx,o::rx", 0,
			"mode 0775, ACL grants write to user " + n + asRootMsg},
		{"handler: its own user may write", "handler", "nobody", "u::rwx,u:" + n + ":rwx,g::rx,m::rwx,o::rx", 0, ""},
		{"handler: its own group may write", "handler", "nobody", "u::rwx,g::rx,g:" + g + ":rwx,m::rwx,o::rx", 0, ""},
		{"handler: nobody may read", "handler", "root", "u::rwx,u:" + n + ":rx,g::rx,m::rx,o::rx", 0, ""},
		{"handler folder: nobody may write", "handler folder", "root", "u::rwx,u:" + n + ":rwx,g::rx,m::rwx,o::rx", 0,
			"mode 0775, ACL grants write to user " + n + asRootMsg},
		{"handler folder: nobody may enter", "handler folder", "root", "u::rwx,u:" + n + ":rx,g::rx,m::rx,o::rx", 0, ""},
		{"config folder: nobody may write", "config folder", "nobody", "u::rwx,u:" + n + ":rwx,g::rx,m::rwx,o::rx", 0,
			"mode 0775, ACL grants write to user " + n + asRootMsg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			confDir := mkdir(t, dir, "etc", 0o755, 0, 0)
			binDir := mkdir(t, dir, "bin", 0o755, 0, 0)
			h := writeFile(t, binDir, "h", "#!/bin/sh\n", 0o755)
			text := "[services.s]\npath = \"../bin/h\"\nuser = \"" + tt.user + "\"\nport = 7\n"
			path := writeFile(t, confDir, "services.toml", text, 0o644)
			target := map[string]string{"config": path, "handler": h, "config folder": confDir, "handler folder": binDir}[tt.target]
			chown(t, target, 0, tt.gid)
			setACL(t, target, tt.acl)
			_, err := Options{Euid: 0, Perms: PermsOn}.Load(path)
			want := tt.want
			switch {
			case want == "":
			case tt.target == "handler":
				want = `key "path": handler ` + h + ": " + want
			case tt.target == "handler folder":
				want = `key "path": handler ` + h + ": folder " + binDir + ": " + want
			case tt.target == "config folder":
				want = path + ": folder " + confDir + ": " + want
			default:
				want = path + ": " + want
			}
			checkPermResult(t, err, path, want)
		})
	}
}

// TestResolve follows paths as the kernel does and records each link.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "usr/bin/h", "x", 0o644)
	mkSymlink(t, dir, "bin", "usr/bin")
	mkSymlink(t, dir, "abs", filepath.Join(dir, "usr"))
	mkSymlink(t, dir, "usr/lib/up", "../bin") // usr/bin
	mkSymlink(t, dir, "loop1", "loop2")
	mkSymlink(t, dir, "loop2", "loop1")
	tests := []struct {
		name, path string
		final      string   // "" when an error is wanted
		links      []string // "path -> target" in order
		err        string
	}{
		{"plain", dir + "/usr/bin/h", dir + "/usr/bin/h", nil, ""},
		{"relative link to a folder", dir + "/bin/h", dir + "/usr/bin/h", []string{dir + "/bin -> usr/bin"}, ""},
		// bin/../lib is usr/lib, not dir/lib: ".." leaves where bin leads.
		{"dot-dot after a link", dir + "/bin/../lib/up/h", dir + "/usr/bin/h",
			[]string{dir + "/bin -> usr/bin", dir + "/usr/lib/up -> ../bin"}, ""},
		{"absolute link", dir + "/abs/bin/./h", dir + "/usr/bin/h", []string{dir + "/abs -> " + dir + "/usr"}, ""},
		{"link as the last name, with a trailing slash", dir + "/bin/", dir + "/usr/bin", []string{dir + "/bin -> usr/bin"}, ""},
		{"root", "/", "/", nil, ""},
		{"missing", dir + "/usr/nope/h", "", nil, "no such file or directory"},
		{"file as a folder", dir + "/usr/bin/h/x", "", nil, "not a directory"},
		{"missing after a link", dir + "/bin/nope", "", nil, "symlink " + dir + "/bin -> usr/bin: " + dir + "/usr/bin/nope: no such file or directory"},
		{"loop", dir + "/loop1", "", nil, "symlink " + dir + "/loop1 -> loop2: too many levels of symbolic links (more than 40 symlinks on the way)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := resolve(tt.path)
			if tt.final == "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, want error %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var links []string
			for _, l := range w.links {
				links = append(links, l.String())
			}
			if w.final != tt.final || !slices.Equal(links, tt.links) {
				t.Errorf("got %s via %q, want %s via %q", w.final, links, tt.final, tt.links)
			}
			// Every folder of the resolved path was judged.
			for d := filepath.Dir(w.final); d != "/"; d = filepath.Dir(d) {
				if !slices.ContainsFunc(w.folders, func(u folderUse) bool { return u.dir == d }) {
					t.Errorf("folder %s of %s not among %v", d, w.final, w.folders)
				}
			}
		})
	}
	t.Run("relative to the current folder", func(t *testing.T) {
		t.Chdir(dir)
		w, err := resolve("bin/h")
		if err != nil || w.final != dir+"/usr/bin/h" {
			t.Fatalf("got %+v, %v; want %s", w, err, dir+"/usr/bin/h")
		}
	})
}
