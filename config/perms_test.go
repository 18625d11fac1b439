package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	path := writeFile(t, dir, "services.toml", "[services.e]\nbuiltin = \"echo\"\nport = 7\n", 0o666)
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
