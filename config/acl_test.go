package config

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseACL(t *testing.T) {
	none := uint32(0xffffffff)
	tests := []struct {
		name string
		data []byte
		want []aclEntry
		err  string // "" when valid
	}{
		{"base entries only", aclBytes(t, "u::rw,g::r,o::r"),
			[]aclEntry{{aclUserObj, 6, none}, {aclGroupObj, 4, none}, {aclOther, 4, none}}, ""},
		{"named user and group", aclBytes(t, "u::rwx,u:65534:rw,g::r-x,g:7:w,m::rwx,o::-"),
			[]aclEntry{{aclUserObj, 7, none}, {aclUser, 6, 65534}, {aclGroupObj, 5, none}, {aclGroup, 2, 7}, {aclMask, 7, none}, {aclOther, 0, none}}, ""},
		{"mask without named entries", aclBytes(t, "u::rw,g::r,m::r,o::r"),
			[]aclEntry{{aclUserObj, 6, none}, {aclGroupObj, 4, none}, {aclMask, 4, none}, {aclOther, 4, none}}, ""},
		{"empty", nil, nil, "0 bytes is not a header and whole entries"},
		{"header only", aclBytes(t, "u::rw")[:4], nil, "not all there"},
		{"torn entry", aclBytes(t, "u::rw,g::r,o::r")[:27], nil, "27 bytes is not a header and whole entries"},
		{"version 1", append([]byte{1, 0, 0, 0}, aclBytes(t, "u::rw,g::r,o::r")[4:]...), nil, "version 1, want 2"},
		{"named user without mask", aclBytes(t, "u::rw,u:65534:rw,g::r,o::r"), nil, "entry 4: tag 0x20 out of order, or a mask is missing"},
		{"group before user", aclBytes(t, "g::r,u::rw,o::r"), nil, "entry 1: tag 0x4 out of order"},
		{"two owners", aclBytes(t, "u::rw,u::rw,g::r,o::r"), nil, "entry 2: tag 0x1 out of order"},
		{"no other", aclBytes(t, "u::rw,g::r"), nil, "not all there"},
		{"entry after other", aclBytes(t, "u::rw,g::r,o::r,u:1:r"), nil, "entry 4: tag 0x2 out of order"},
		{"unknown tag", append(aclBytes(t, "u::rw"), 0x40, 0, 0, 0, 0, 0, 0, 0), nil, "entry 2: unknown tag 0x40"},
		{"unknown permission bit", append(aclBytes(t, "u::rw"), 4, 0, 8, 0, 0, 0, 0, 0), nil, "entry 2: unknown permission bits 0x8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseACL(tt.data)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("got %v, want %v", err, tt.want)
			case tt.err == "" && !reflect.DeepEqual(got, tt.want):
				t.Fatalf("got %v, want %v", got, tt.want)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("got %v, %v; want an error containing %q", got, err, tt.err)
			}
		})
	}
}

func TestACLWriter(t *testing.T) {
	handler := runAs{uid: 1000, gid: 100, who: "alice"}
	tests := []struct {
		acl  string
		gid  uint32 // the file's group
		r    runAs
		want string
	}{
		{"u::rw,g::r,o::r", 0, asRoot(), ""},
		{"u::rw,g::r,o::rw", 0, asRoot(), "writable by others"},
		{"u::rw,g::rw,o::r", 0, asRoot(), ""},
		{"u::rw,g::rw,o::r", 5, asRoot(), "writable by group 5"},
		{"u::rw,g::rw,o::r", 100, handler, ""},
		{"u::rw,g::rw,m::r,o::r", 5, asRoot(), ""},
		{"u::rw,u:7:rw,g::r,m::rw,o::r", 0, asRoot(), "ACL grants write to user 7"},
		{"u::rw,u:7:rw,g::r,m::r,o::r", 0, asRoot(), ""},
		{"u::rw,u:0:rw,u:1000:rw,g::r,m::rw,o::r", 0, handler, ""},
		{"u::rw,u:1000:rw,g::r,m::rw,o::r", 0, asRoot(), "ACL grants write to user 1000"},
		{"u::rw,g::r,g:100:rw,m::rw,o::r", 0, handler, ""},
		{"u::rw,g::r,g:0:rw,g:8:rw,m::rw,o::r", 0, handler, "ACL grants write to group 8"},
		// The worst first: others, then the owning group, then named.
		{"u::rw,u:7:rw,g::rw,m::rw,o::rw", 5, asRoot(), "writable by others"},
		{"u::rw,u:7:rw,g::rw,m::rw,o::r", 5, asRoot(), "writable by group 5"},
	}
	for _, tt := range tests {
		entries, err := parseACL(aclBytes(t, tt.acl))
		if err != nil {
			t.Fatalf("%s: %v", tt.acl, err)
		}
		if got := aclWriter(entries, tt.gid, tt.r); got != tt.want {
			t.Errorf("aclWriter(%s, group %d, %s) = %q, want %q", tt.acl, tt.gid, tt.r.who, got, tt.want)
		}
	}
}

// TestReadACL drives readACL with a fake getxattr: absent ACLs read as
// none, a grown ACL is read again, anything else is refused.
func TestReadACL(t *testing.T) {
	valid := aclBytes(t, "u::rw,u:1:r,u:2:r,u:3:r,u:4:r,u:5:r,u:6:r,u:7:r,u:8:r,u:9:r,u:10:r,u:11:r,u:12:r,u:13:r,u:14:r,u:15:r,u:16:r,g::r,m::r,o::r")
	// xattr behaves as getxattr(2) on an attribute holding data.
	xattr := func(data []byte) func([]byte) (int, error) {
		return func(dest []byte) (int, error) {
			switch {
			case len(dest) == 0:
				return len(data), nil
			case len(dest) < len(data):
				return 0, unix.ERANGE
			}
			return copy(dest, data), nil
		}
	}
	fails := func(err error) func([]byte) (int, error) {
		return func([]byte) (int, error) { return 0, err }
	}
	tests := []struct {
		name    string
		get     func([]byte) (int, error)
		entries int    // entries wanted
		err     string // "" when no error
	}{
		{"no ACL", fails(unix.ENODATA), 0, ""},
		{"no ACLs on this filesystem", fails(unix.EOPNOTSUPP), 0, ""},
		{"larger than the first buffer", xattr(valid), 20, ""},
		{"malformed", xattr(valid[:len(valid)-1]), 0, "malformed ACL (system.posix_acl_access): 163 bytes is not a header and whole entries: refusing"},
		{"cannot read", fails(unix.EIO), 0, "cannot read its ACL (system.posix_acl_access): input/output error: refusing"},
		{"always growing", func(dest []byte) (int, error) {
			if len(dest) == 0 {
				return 1 << 10, nil
			}
			return 0, unix.ERANGE
		}, 0, "it keeps changing size: refusing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readACL(tt.get)
			switch {
			case tt.err == "" && (err != nil || len(got) != tt.entries):
				t.Fatalf("got %d entries, %v; want %d, no error", len(got), err, tt.entries)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || got != nil):
				t.Fatalf("got %v, %v; want an error containing %q", got, err, tt.err)
			}
			if err != nil && errors.Is(err, unix.ENODATA) {
				t.Fatalf("error %v should not read as an absent ACL", err)
			}
		})
	}
}

// FuzzParseACL: any bytes parse without a panic, and what parses is
// exactly the entries the bytes encode.
func FuzzParseACL(f *testing.F) {
	for _, s := range []string{"u::rw,g::r,o::r", "u::rwx,u:65534:rw,g::r-x,g:7:w,m::rwx,o::-", "u::rw,u:1:r,g::r,o::r"} {
		f.Add(aclBytes(f, s))
	}
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseACL(data)
		if err != nil {
			if entries != nil {
				t.Fatalf("entries %v along with error %v", entries, err)
			}
			return
		}
		b := binary.LittleEndian.AppendUint32(nil, aclVersion)
		for _, e := range entries {
			b = binary.LittleEndian.AppendUint16(b, e.tag)
			b = binary.LittleEndian.AppendUint16(b, e.perm)
			b = binary.LittleEndian.AppendUint32(b, e.id)
		}
		if string(b) != string(data) {
			t.Fatalf("parsed %x as %v, which encodes as %x", data, entries, b)
		}
		// Every valid ACL has an owner, an owning group and others.
		if len(entries) < 3 || entries[0].tag != aclUserObj || entries[len(entries)-1].tag != aclOther {
			t.Fatalf("parsed %x as %v", data, entries)
		}
		_ = aclWriter(entries, 0, asRoot())
	})
}
