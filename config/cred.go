package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// passwdFile is read for the login shell, which os/user does not expose.
const passwdFile = "/etc/passwd"

// defaultShell is the shell of a user without one (as login(1) does) or
// without a passwd entry.
const defaultShell = "/bin/sh"

// maxID is the largest usable uid or gid: (uid_t)-1 means "unchanged" to
// setresuid(2), so it can never name a user.
const maxID = 1<<32 - 2

// account is a resolved user.
type account struct {
	name     string // user name, or the number when there is no entry
	uid, gid uint32
	// known is false for a number without a passwd entry: there is no
	// primary group, home or shell to take from the database.
	known       bool
	home, shell string
	groups      []uint32 // every group of the user, primary included
}

// groupID is a resolved group.
type groupID struct {
	name string // group name, or the number as written
	gid  uint32
}

// lookupAccount resolves the user key. Only an all-digit value is a
// number: "0day" is a name, looked up as a name, and never becomes uid 0.
func lookupAccount(v any) (*account, error) {
	switch x := v.(type) {
	case int64:
		return accountByID(x)
	case string:
		if isDigits(x) {
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("uid %s out of range 0..%d", x, maxID)
			}
			return accountByID(n)
		}
		return accountByName(x)
	}
	return nil, fmt.Errorf("must be a user name or number, not %s", typeName(v))
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// accountByName looks a user name up in the user database.
func accountByName(name string) (*account, error) {
	if err := checkDBName(name, "user"); err != nil {
		return nil, err
	}
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	switch {
	case errors.As(err, &unknown) && name[0] >= '0' && name[0] <= '9':
		return nil, fmt.Errorf("unknown user %q (a name, since it is not all digits: it is not read as a uid)", name)
	case errors.As(err, &unknown):
		return nil, fmt.Errorf("unknown user %q", name)
	case err != nil:
		return nil, fmt.Errorf("looking up user %q: %w", name, err)
	}
	return fromUser(u)
}

// accountByID resolves a uid; a uid without a passwd entry is allowed, as
// a bare number.
func accountByID(n int64) (*account, error) {
	if n < 0 || n > maxID {
		return nil, fmt.Errorf("uid %d out of range 0..%d", n, maxID)
	}
	u, err := user.LookupId(strconv.FormatInt(n, 10))
	var unknown user.UnknownUserIdError
	switch {
	case errors.As(err, &unknown):
		return &account{name: strconv.FormatInt(n, 10), uid: uint32(n), home: "/", shell: defaultShell}, nil
	case err != nil:
		return nil, fmt.Errorf("looking up uid %d: %w", n, err)
	}
	return fromUser(u)
}

// fromUser converts a database entry, with its groups.
func fromUser(u *user.User) (*account, error) {
	uid, err1 := parseID(u.Uid)
	gid, err2 := parseID(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q: %w", u.Username, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("listing the groups of user %q: %w", u.Username, err)
	}
	groups := []uint32{gid}
	for _, s := range ids {
		g, err := parseID(s)
		if err != nil {
			return nil, fmt.Errorf("groups of user %q: %w", u.Username, err)
		}
		groups = append(groups, g)
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return &account{name: u.Username, uid: uid, gid: gid, known: true, home: home,
		shell: loginShell(u.Username), groups: sortedIDs(groups)}, nil
}

// parseID parses a numeric id from the user database.
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("bad id %q in the user database", s)
	}
	return uint32(n), nil
}

// sortedIDs sorts and deduplicates ids in place.
func sortedIDs(ids []uint32) []uint32 {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// checkDBName refuses names that cannot be in /etc/passwd or /etc/group
// and that a C look-up might read differently (a ':' or a newline).
func checkDBName(name, what string) error {
	if name == "" {
		return fmt.Errorf("%s must not be empty", what)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r == ':' || r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s name %q contains ':' or a control character", what, name)
	}
	return nil
}

// loginShell returns name's shell from /etc/passwd; users from other
// databases (LDAP, say) and empty shell fields get defaultShell.
func loginShell(name string) string {
	data, err := os.ReadFile(passwdFile)
	if err != nil {
		return defaultShell
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Split(strings.TrimRight(line, "\n"), ":")
		if len(f) == 7 && f[0] == name {
			if f[6] != "" {
				return f[6]
			}
			break
		}
	}
	return defaultShell
}

// lookupGroup resolves the group key: a name, or an all-digit gid (which
// need not have an entry).
func lookupGroup(v any) (*groupID, error) {
	var s string
	switch x := v.(type) {
	case int64:
		s = strconv.FormatInt(x, 10)
	case string:
		s = x
	default:
		return nil, fmt.Errorf("must be a group name or number, not %s", typeName(v))
	}
	if isDigits(s) {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n > maxID {
			return nil, fmt.Errorf("gid %s out of range 0..%d", s, maxID)
		}
		return &groupID{name: s, gid: uint32(n)}, nil
	}
	return groupByName(s)
}

// groupByName looks a group name up in the group database.
func groupByName(name string) (*groupID, error) {
	if err := checkDBName(name, "group"); err != nil {
		return nil, err
	}
	if strings.HasPrefix(name, "-") {
		return nil, fmt.Errorf("gid %s out of range 0..%d", name, maxID)
	}
	g, err := user.LookupGroup(name)
	var unknown user.UnknownGroupError
	switch {
	case errors.As(err, &unknown):
		return nil, fmt.Errorf("unknown group %q", name)
	case err != nil:
		return nil, fmt.Errorf("looking up group %q: %w", name, err)
	}
	gid, err := parseID(g.Gid)
	if err != nil {
		return nil, fmt.Errorf("group %q: %w", name, err)
	}
	return &groupID{name: name, gid: gid}, nil
}

// cred resolves the identity a handler runs as, and enforces who may be
// chosen: as root the choice must be explicit, otherwise it must be
// superd's own uid.
func (b *builder) cred() Cred {
	sp := b.sp
	if sp.bad["user"] || sp.bad["group"] {
		return Cred{}
	}
	if !sp.has("user") {
		b.noUser()
		return b.ownAccount()
	}
	acct := sp.user
	gid, ok := b.credGid(acct)
	if !ok || !b.mayRunAs(acct, gid) {
		return Cred{}
	}
	groups := []uint32{gid}
	if acct.known {
		// As initgroups(user, gid) does: the groups that list the user
		// plus the chosen gid. The database answer also holds the
		// user's passwd group, which a `group` setting replaces.
		groups = slices.Clone(acct.groups)
		if gid != acct.gid {
			groups = slices.DeleteFunc(groups, func(g uint32) bool { return g == acct.gid })
		}
		groups = sortedIDs(append(groups, gid))
	}
	return Cred{Set: true, User: acct.name, Uid: acct.uid, Gid: gid, Groups: groups,
		Home: acct.home, Shell: acct.shell}
}

// ownAccount describes superd's own user, for the HOME, USER, LOGNAME
// and SHELL of a handler that runs as superd itself (Set stays false: no
// switch). An account without a passwd entry leaves them unset.
func (b *builder) ownAccount() Cred {
	if b.l.opts.Euid == 0 {
		return Cred{}
	}
	acct, err := accountByID(int64(b.l.opts.Euid))
	if err != nil || !acct.known {
		return Cred{}
	}
	return Cred{User: acct.name, Uid: acct.uid, Gid: acct.gid, Home: acct.home, Shell: acct.shell}
}

// noUser checks a service that names no user.
func (b *builder) noUser() {
	switch {
	case b.l.opts.Euid == 0 && !b.sp.disabled:
		b.failf("user", `no user set: superd runs as root, and running a handler as root must be explicit: set user = "root" to mean it, or another user (here or in [defaults])`)
	case b.sp.has("group"):
		b.failf("group", "group is set without user: set user too")
	}
}

// credGid is the configured group, else the user's primary group.
func (b *builder) credGid(acct *account) (uint32, bool) {
	switch {
	case b.sp.has("group"):
		return b.sp.group.gid, true
	case acct.known:
		return acct.gid, true
	}
	b.failf("user", "uid %d has no passwd entry, so no primary group: set group", acct.uid)
	return 0, false
}

// mayRunAs refuses, when superd is not root, an identity it cannot take.
func (b *builder) mayRunAs(acct *account, gid uint32) bool {
	euid := b.l.opts.Euid
	if euid == 0 {
		return true
	}
	if int64(acct.uid) != int64(euid) {
		b.failf("user", "superd runs as uid %d and cannot switch to user %s (uid %d)", euid, acct.name, acct.uid)
		return false
	}
	if b.sp.has("group") && acct.known && gid != acct.gid {
		b.failf("group", "superd runs as uid %d and cannot switch to group %s (gid %d)", euid, b.sp.group.name, gid)
		return false
	}
	return true
}
