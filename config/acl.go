package config

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The binary form of a POSIX access ACL, as Linux keeps it in an
// extended attribute (linux/posix_acl_xattr.h): a little-endian u32
// version, then one {tag u16, perm u16, id u32} per entry.
const (
	aclXattr     = "system.posix_acl_access"
	aclVersion   = 0x0002
	aclHeaderLen = 4
	aclEntryLen  = 8

	aclUserObj  = 0x01 // the owner (the mode's owner bits)
	aclUser     = 0x02 // a named user
	aclGroupObj = 0x04 // the owning group
	aclGroup    = 0x08 // a named group
	aclMask     = 0x10 // bounds USER, GROUP_OBJ and GROUP (the mode's group bits)
	aclOther    = 0x20 // everyone else (the mode's other bits)

	aclRead  = 4
	aclWrite = 2
	aclExec  = 1
)

// aclEntry is one entry of an access ACL. id only means something for
// aclUser (a uid) and aclGroup (a gid).
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

// parseACL decodes the system.posix_acl_access attribute. It accepts
// exactly what the kernel's posix_acl_valid accepts: entries in the
// order USER_OBJ, USER..., GROUP_OBJ, GROUP..., MASK, OTHER, a MASK
// whenever a named entry exists, and only the read, write and execute
// bits. Anything else is an error, never a guess: a permission check
// that misreads an ACL must refuse, not pass.
func parseACL(b []byte) ([]aclEntry, error) {
	if len(b) < aclHeaderLen || (len(b)-aclHeaderLen)%aclEntryLen != 0 {
		return nil, fmt.Errorf("%d bytes is not a header and whole entries", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("version %d, want %d", v, aclVersion)
	}
	entries := make([]aclEntry, 0, (len(b)-aclHeaderLen)/aclEntryLen)
	// state is the tag the next entry may have, as in posix_acl_valid;
	// 0 once OTHER ended the list.
	state, needMask := uint16(aclUserObj), false
	for off := aclHeaderLen; off < len(b); off += aclEntryLen {
		e := aclEntry{
			tag:  binary.LittleEndian.Uint16(b[off:]),
			perm: binary.LittleEndian.Uint16(b[off+2:]),
			id:   binary.LittleEndian.Uint32(b[off+4:]),
		}
		n := len(entries) + 1
		if e.perm&^(aclRead|aclWrite|aclExec) != 0 {
			return nil, fmt.Errorf("entry %d: unknown permission bits %#x", n, e.perm)
		}
		ok := false
		switch e.tag {
		case aclUserObj:
			ok, state = state == aclUserObj, aclUser
		case aclUser:
			ok, needMask = state == aclUser, true
		case aclGroupObj:
			ok, state = state == aclUser, aclGroup
		case aclGroup:
			ok, needMask = state == aclGroup, true
		case aclMask:
			ok, state = state == aclGroup, aclOther
		case aclOther:
			ok, state = state == aclOther || (state == aclGroup && !needMask), 0
		default:
			return nil, fmt.Errorf("entry %d: unknown tag %#x", n, e.tag)
		}
		if !ok {
			return nil, fmt.Errorf("entry %d: tag %#x out of order, or a mask is missing", n, e.tag)
		}
		entries = append(entries, e)
	}
	if state != 0 {
		return nil, errors.New("the entries for owner, group and others are not all there")
	}
	return entries, nil
}

// aclWriter says who, besides the owner, the ACL lets write the file
// although r does not allow it; "" when nobody. gid is the file's group,
// which GROUP_OBJ describes. With an ACL the mode's group bits are the
// MASK, so GROUP_OBJ's own perm (after the MASK) is what the owning
// group really has.
func aclWriter(entries []aclEntry, gid uint32, r runAs) string {
	mask := uint16(aclRead | aclWrite | aclExec) // no MASK: nothing is bounded
	for _, e := range entries {
		if e.tag == aclMask {
			mask = e.perm
		}
	}
	// The first reason wins in this order, as in the mode rules: others,
	// the owning group, then named users and groups as listed.
	var others, group, named string
	for _, e := range entries {
		switch {
		case e.tag == aclOther && e.perm&aclWrite != 0:
			others = "writable by others"
		case e.perm&mask&aclWrite == 0:
		case e.tag == aclGroupObj && !r.groupOK(gid):
			group = fmt.Sprintf("writable by group %d", gid)
		case e.tag == aclUser && !r.userOK(e.id) && named == "":
			named = fmt.Sprintf("ACL grants write to user %d", e.id)
		case e.tag == aclGroup && !r.groupOK(e.id) && named == "":
			named = fmt.Sprintf("ACL grants write to group %d", e.id)
		}
	}
	switch {
	case others != "":
		return others
	case group != "":
		return group
	}
	return named
}

// readACL reads and parses an access ACL with get, which is
// unix.Lgetxattr or unix.Fgetxattr bound to one file and aclXattr. It
// returns nil, nil when the file has none (ENODATA) or its filesystem
// has no ACLs (ENOTSUP, which is EOPNOTSUPP on Linux).
func readACL(get func(dest []byte) (int, error)) ([]aclEntry, error) {
	// Header and 16 entries: every ACL a person writes fits at once.
	buf := make([]byte, aclHeaderLen+16*aclEntryLen)
	// A concurrent setfacl can grow the ACL between the size query and
	// the read: try again a few times, then give up (and refuse).
	for range 4 {
		n, err := get(buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = get(nil); err == nil {
				buf = make([]byte, n)
				continue
			}
		}
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("cannot read its ACL (%s): %w: refusing", aclXattr, err)
		}
		entries, err := parseACL(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("malformed ACL (%s): %w: refusing", aclXattr, err)
		}
		return entries, nil
	}
	return nil, fmt.Errorf("cannot read its ACL (%s): it keeps changing size: refusing", aclXattr)
}

// pathACL reads the access ACL of name itself (a symlink is not
// followed: callers pass resolved paths).
func pathACL(name string) ([]aclEntry, error) {
	return readACL(func(dest []byte) (int, error) { return unix.Lgetxattr(name, aclXattr, dest) })
}
