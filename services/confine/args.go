package confine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/superd/superd/config"
)

// Args encodes what the trampoline must do as its argument vector, so the
// trampoline needs no configuration file and no pipe: argv0 (the name
// the trampoline shows in ps), Command, then one option per setting of
// e (umask, nice, each rlimit, and uid, gid and groups when e.Cred.Set),
// then "--", e.Path and e.Argv. The caller clears e.Cred.Set when the
// handler must not switch users (superd not root). Everything after
// "--" is passed on untouched, whatever it looks like.
func Args(argv0 string, e *config.Exec) []string {
	args := []string{argv0, Command}
	if e.Umask >= 0 {
		args = append(args, "umask="+strconv.Itoa(e.Umask))
	}
	if e.SetNice {
		args = append(args, "nice="+strconv.Itoa(e.Nice))
	}
	for _, r := range e.Rlimits {
		args = append(args, fmt.Sprintf("rlimit=%d:%d", r.Resource, r.Value))
	}
	if e.Cred.Set {
		groups := make([]string, len(e.Cred.Groups))
		for i, g := range e.Cred.Groups {
			groups[i] = strconv.FormatUint(uint64(g), 10)
		}
		args = append(args,
			"uid="+strconv.FormatUint(uint64(e.Cred.Uid), 10),
			"gid="+strconv.FormatUint(uint64(e.Cred.Gid), 10),
			"groups="+strings.Join(groups, ","))
	}
	args = append(args, "--", e.Path)
	return append(args, e.Argv...)
}

// settings is a parsed trampoline command line.
type settings struct {
	umask, nice       int
	setUmask, setNice bool
	rlimits           map[int]uint64 // resource → soft and hard limit
	setCred           bool           // uid, gid and groups apply
	uid, gid          int
	groups            []int // never nil when setCred: empty clears them
	path              string
	argv              []string
}

// parse decodes the arguments after Command (see Args).
func parse(args []string) (*settings, error) {
	s := &settings{rlimits: make(map[int]uint64)}
	for i, a := range args {
		if a == "--" {
			if len(args) < i+3 {
				return nil, errors.New("missing handler path or argv0")
			}
			s.path, s.argv = args[i+1], args[i+2:]
			return s, nil
		}
		if err := s.parseOption(a); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("missing --")
}

func (s *settings) parseOption(a string) error {
	key, val, _ := strings.Cut(a, "=")
	var err error
	switch key {
	case "umask":
		s.setUmask = true
		s.umask, err = strconv.Atoi(val)
	case "nice":
		s.setNice = true
		s.nice, err = strconv.Atoi(val)
	case "rlimit":
		res, lim, _ := strings.Cut(val, ":")
		var r int
		var v uint64
		if r, err = strconv.Atoi(res); err == nil {
			v, err = strconv.ParseUint(lim, 10, 64)
			s.rlimits[r] = v
		}
	case "uid":
		s.setCred = true
		s.uid, err = parseID(val)
	case "gid":
		s.gid, err = parseID(val)
	case "groups":
		s.groups, err = parseIDs(val)
	default:
		err = errors.New("unknown option")
	}
	if err != nil {
		return fmt.Errorf("bad argument %q: %w", a, err)
	}
	return nil
}

// parseID parses a uid or gid: what config holds, a uint32. A negative
// number would mean "leave unchanged" to some of the system calls.
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return int(n), err
}

// parseIDs parses a comma-separated list of ids; "" is the empty list.
func parseIDs(s string) ([]int, error) {
	if s == "" {
		return []int{}, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := parseID(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
