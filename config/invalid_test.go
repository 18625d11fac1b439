package config

import (
	"strings"
	"testing"
)

// svc is a valid service table with extra lines added (replacing the
// base keys they set), so that each case below has exactly one mistake.
func svc(extra string) string {
	out := "[services.s]\n"
	for _, base := range []string{`path = "/bin/cat"`, `user = "nobody"`, `port = 7000`} {
		key, _, _ := strings.Cut(base, " ")
		if !strings.HasPrefix(extra, key+" ") && !strings.Contains(extra, "\n"+key+" ") {
			out += base + "\n"
		}
	}
	return out + extra + "\n"
}

// builtinSvc is svc for a built-in service.
func builtinSvc(extra string) string {
	return "[services.s]\nbuiltin = \"echo\"\nport = 7000\n" + extra + "\n"
}

// TestInvalid loads one mistake per case and checks that it is reported,
// once, with the expected message, service and key.
func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		toml string
		key  string // Error.Key; "-" skips the check
		want string // substring of Error()
		opts *Options
	}{
		{"unknown key", svc(`prot = 7`), "prot", `unknown key (did you mean "port"?)`, nil},
		{"unknown key in defaults", "[defaults]\nusr = \"nobody\"\n", "defaults.usr", `unknown key (did you mean "user"?)`, nil},
		{"unknown key in superd", "[superd]\nlogs = \"stderr\"\n", "superd.logs", `unknown key (did you mean "log"?)`, nil},
		{"typo'd table", "[service.s]\nport = 7\n", "service", `unknown table [service] (did you mean "services"?)`, nil},
		{"top-level key", "port = 7\n", "port", "unknown top-level key", nil},
		{"service not a table", "[services]\ns = 7\n", "", "a service must be a table, not an integer", nil},
		{"bad service name", "[services.\"a b\"]\nbuiltin = \"echo\"\nport = 7\n", "", `service name "a b" may only use`, nil},
		{"case matters", svc(`Port = 7`), "Port", `unknown key (did you mean "port"?)`, nil},
		{"port 0", "[services.s]\nbuiltin = \"echo\"\nport = 0\n", "port", "port 0 out of range 1..65535", nil},
		{"port 70000", "[services.s]\nbuiltin = \"echo\"\nport = 70000\n", "port", "port 70000 out of range 1..65535", nil},
		{"port missing", "[services.s]\nbuiltin = \"echo\"\n", "port", "port is required", nil},
		{"port wrong type", "[services.s]\nbuiltin = \"echo\"\nport = true\n", "port", "must be a number 1..65535 or a name from /etc/services, not a boolean", nil},
		{"unknown port name", "[services.s]\nbuiltin = \"echo\"\nport = \"no-such-service\"\n", "port", `unknown port name "no-such-service" for tcp`, nil},
		{"type/protocol mismatch", svc("type = \"dgram\"\nprotocol = \"tcp\""), "type", `type "dgram" does not match protocol "tcp"`, nil},
		{"udp stream", svc("type = \"stream\"\nprotocol = \"udp\""), "type", `type "stream" does not match protocol "udp"`, nil},
		{"unknown type", svc(`type = "seqpacket"`), "type", `type "seqpacket" is not one of stream or dgram`, nil},
		{"unknown protocol", svc(`protocol = "sctp"`), "protocol", `protocol "sctp" is not one of tcp, tcp4, tcp6, udp, udp4, udp6 or unix`, nil},
		{"dgram wait=false", svc("protocol = \"udp\"\nwait = false"), "wait", "dgram services need wait = true", nil},
		{"both path and builtin", svc(`builtin = "echo"`), "builtin", "both path and builtin are set", nil},
		{"neither path nor builtin", "[services.s]\nport = 7\nuser = \"nobody\"\n", "", "no handler: set path", nil},
		{"relative working_dir", svc(`working_dir = "tmp"`), "working_dir", `working_dir "tmp" must be an absolute path`, nil},
		{"working_dir not a directory", svc(`working_dir = "/bin/sh"`), "working_dir", "is not a directory", nil},
		{"missing handler", svc(`path = "/nonexistent/handler"`), "path", "handler /nonexistent/handler does not exist", nil},
		{"non-executable handler", svc(`path = "notexec"`), "path", "notexec is not executable (mode 0644)", nil},
		{"handler is a directory", svc(`path = "/tmp"`), "path", "handler /tmp is not a regular file", nil},
		{"unknown builtin", "[services.s]\nbuiltin = \"qotd\"\nport = 7\n", "builtin", `builtin "qotd" is not one of echo, discard, daytime, chargen or time`, nil},
		{"builtin on unix", "[services.s]\nbuiltin = \"echo\"\nprotocol = \"unix\"\naddress = \"/run/e.sock\"\n", "builtin", "built-in services serve tcp and udp, not unix sockets", nil},
		{"builtin with wait", builtinSvc("wait = true"), "wait", "built-in services do not support wait = true", nil},
		{"builtin with args", builtinSvc(`args = ["-x"]`), "args", "args has no effect on a built-in service", nil},
		{"unix with port", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\nport = 7\n", "port", "port does not apply to unix sockets", nil},
		{"unix without address", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\n", "address", "address is required for a unix socket", nil},
		{"unix relative path", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"s.sock\"\n", "address", `unix socket path "s.sock" must be absolute`, nil},
		{"unix path too long", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/" + strings.Repeat("x", 110) + "\"\n", "address", "unix socket path is 111 bytes long", nil},
		{"socket_mode on tcp", svc(`socket_mode = "0660"`), "socket_mode", "socket_mode applies only to unix sockets", nil},
		{"bad socket_mode", svc(`socket_mode = "0999"`), "socket_mode", `"0999" is not an octal mode`, nil},
		{"socket_mode as integer", svc(`socket_mode = 660`), "socket_mode", `must be an octal string such as "0660", not an integer`, nil},
		{"user 0day is a name", svc(`user = "0day"`), "user", `unknown user "0day" (a name, since it is not all digits`, nil},
		{"unknown user", svc(`user = "no-such-user-xyz"`), "user", `unknown user "no-such-user-xyz"`, nil},
		{"user with NUL", svc(`user = "root\u0000x"`), "user", "contains ':' or a control character", nil},
		{"arg with NUL", svc(`args = ["a\u0000b"]`), "args", "element 1: \"a\\x00b\" contains a NUL byte", nil},
		{"uid out of range", svc(`user = 4294967295`), "user", "uid 4294967295 out of range", nil},
		{"unknown group", svc(`group = "no-such-group-xyz"`), "group", `unknown group "no-such-group-xyz"`, nil},
		{"root without user", "[services.s]\npath = \"/bin/cat\"\nport = 7\n", "user", `running a handler as root must be explicit: set user = "root"`, nil},
		{"bad user in defaults is reported once", "[defaults]\nuser = \"no-such-user-xyz\"\n" + builtinSvc("") + "[services.t]\npath = \"/bin/cat\"\nport = 8\n", "defaults.user", `unknown user "no-such-user-xyz"`, nil},
		{"non-root with other user", svc(""), "user", "superd runs as uid 4000123 and cannot switch to user nobody", &Options{Euid: 4000123}},
		{"non-root with group only", "[services.s]\npath = \"/bin/cat\"\nport = 7000\ngroup = \"nogroup\"\n", "group", "group is set without user", &Options{Euid: 4000123}},
		{"numeric user without entry needs group", svc(`user = 4000123`), "user", "uid 4000123 has no passwd entry, so no primary group: set group", nil},
		{"duplicate socket", builtinSvc("") + "[services.t]\nbuiltin = \"echo\"\nport = 7000\n", "port", `socket tcp/:7000 is also used by service "s"`, nil},
		{"dual-stack overlap", builtinSvc("") + "[services.t]\nbuiltin = \"echo\"\nport = 7000\nprotocol = \"tcp4\"\n", "port", `socket tcp4/0.0.0.0:7000 overlaps socket tcp/:7000 of service "s"`, nil},
		{"same unix path", "[services.s]\nbuiltin = \"discard\"\nport = 9\n[services.t]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\n[services.u]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\ntype = \"dgram\"\naddress = \"/run/s.sock\"\n", "address", `socket unixgram//run/s.sock overlaps socket unix//run/s.sock of service "t"`, nil},
		{"host name address", svc(`address = "localhost"`), "address", `address "localhost" is not an IP address`, nil},
		{"IPv6 address on tcp4", svc("protocol = \"tcp4\"\naddress = \"::1\""), "address", "address ::1 is not an IPv4 address, as protocol tcp4 requires", nil},
		{"IPv4 address on tcp6", svc("protocol = \"tcp6\"\naddress = \"127.0.0.1\""), "address", "address 127.0.0.1 is not an IPv6 address", nil},
		{"bad only_from", svc(`only_from = ["10.0.0.0/8", "10.0.0.0/33"]`), "only_from", `"10.0.0.0/33" is not an IP address or a CIDR prefix`, nil},
		{"empty only_from", svc(`only_from = []`), "only_from", "an empty only_from would allow every address", nil},
		{"only_from with zone", svc(`only_from = ["fe80::1%eth0"]`), "only_from", `"fe80::1%eth0" is not an IP address`, nil},
		{"only_from not a list", svc(`only_from = "10.0.0.0/8"`), "only_from", "must be an array of strings, not a string", nil},
		{"bad no_access element", svc(`no_access = [7]`), "no_access", "element 1: must be a string, not an integer", nil},
		{"bad limits name", svc(`limits = { nofiles = 5 }`), "limits.nofiles", `unknown limit (did you mean "nofile"?)`, nil},
		{"bad limits value", svc(`limits = { as = "12X" }`), "limits.as", `"12X" is not an integer (bytes), a size such as "512M"`, nil},
		{"negative limit", svc(`limits = { nproc = -1 }`), "limits.nproc", "limit -1 must not be negative", nil},
		{"size on a count limit", svc(`limits = { nofile = "1K" }`), "limits.nofile", `"1K" is not an integer or "unlimited"`, nil},
		{"fractional cpu", svc(`limits = { cpu = "1.5s" }`), "limits.cpu", "must be a whole, non-negative number of seconds", nil},
		{"unlimited nofile", svc(`limits = { nofile = "unlimited" }`), "limits.nofile", `nofile cannot be "unlimited"`, nil},
		{"limits not a table", svc(`limits = 5`), "limits", "must be a table, not an integer", nil},
		{"nice out of range", svc(`nice = 20`), "nice", "nice 20 out of range -20..19", nil},
		{"instances 0", svc(`instances = 0`), "instances", "instances must be at least 1, not 0", nil},
		{"negative per_source", svc(`per_source = -1`), "per_source", "per_source must be at least 0, not -1", nil},
		{"negative rate", svc(`rate = -1.5`), "rate", "rate -1.5 must be a number from 0 (no limit) to 1000000", nil},
		{"infinite rate", svc(`rate = inf`), "rate", "rate +Inf must be a number from 0 (no limit) to 1000000", nil},
		{"huge rate", svc(`rate = 1e20`), "rate", "rate 1e+20 must be a number from 0 (no limit) to 1000000", nil},
		{"backlog out of range", svc(`backlog = 70000`), "backlog", "backlog 70000 out of range 0..65535", nil},
		{"bad umask", svc(`umask = "8"`), "umask", `"8" is not an octal mode`, nil},
		{"bad duration", svc(`timeout = "30"`), "timeout", `invalid duration "30"`, nil},
		{"negative duration", svc(`timeout = "-1s"`), "timeout", `negative duration "-1s"`, nil},
		{"duration as integer", svc(`timeout = 30`), "timeout", `must be a duration string such as "30s", not an integer`, nil},
		{"overflowing timeout", svc(`timeout = "2562047h47m16s"`), "timeout", `timeout "2562047h47m16s" is longer than the maximum 8760h0m0s`, nil},
		{"timeout over a year", svc(`timeout = "8760h0m0.001s"`), "timeout", `timeout "8760h0m0.001s" is longer than the maximum 8760h0m0s`, nil},
		{"timeout too long in defaults", "[defaults]\ntimeout = \"9000h\"\n" + builtinSvc(""), "defaults.timeout", `timeout "9000h" is longer than the maximum 8760h0m0s`, nil},
		{"bad env name", svc(`env = { "1X" = "y" }`), "env", `variable 1X: "1X" is not a valid variable name`, nil},
		{"env value not a string", svc(`env = { X = 1 }`), "env", "variable X: must be a string, not an integer", nil},
		{"bad pass_env name", svc(`pass_env = ["A-B"]`), "pass_env", `"A-B" is not a valid variable name`, nil},
		{"empty argv0", svc(`argv0 = ""`), "argv0", "argv0 must not be empty", nil},
		{"bad stderr", svc(`stderr = "file"`), "stderr", `stderr "file" is not one of log, socket or null`, nil},
		{"socket_user on tcp", svc(`socket_user = "nobody"`), "socket_user", "socket_user applies only to unix sockets", nil},
		{"socket_group on tcp", svc(`socket_group = "nogroup"`), "socket_group", "socket_group applies only to unix sockets", nil},
		{"unknown socket_user", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\nsocket_user = \"no-such-user-xyz\"\n", "socket_user", `unknown user "no-such-user-xyz"`, nil},
		{"unknown socket_group", "[services.s]\npath = \"/bin/cat\"\nuser = \"nobody\"\nprotocol = \"unix\"\naddress = \"/run/s.sock\"\nsocket_group = \"no-such-group-xyz\"\n", "socket_group", `unknown group "no-such-group-xyz"`, nil},
		{"typo'd socket_user", svc(`socket_usr = "nobody"`), "socket_usr", `unknown key (did you mean "socket_user"?)`, nil},
		{"non-root, low port", "[services.s]\npath = \"/bin/cat\"\nport = 80\n", "port", "port 80 needs root or CAP_NET_BIND_SERVICE (net.ipv4.ip_unprivileged_port_start is 1024)", &Options{Euid: 4000123, Host: Host{UnprivilegedPortStart: func() int { return 1024 }, HasCapability: func(int) bool { return false }}}},
		{"script without interpreter", svc(`path = "nointerp"`), "path", "nointerp: interpreter /nonexistent/interpreter (from its #! line) does not exist", nil},
		{"disabled not a bool", svc(`disabled = "yes"`), "disabled", "must be true or false, not a string", nil},
		{"bad log value", "[superd]\nlog = \"file\"\n", "superd.log", `log "file" is not one of syslog, stderr or journal`, nil},
		{"bad facility", "[superd]\nsyslog_facility = \"local8\"\n", "superd.syslog_facility", `syslog facility "local8" is not one of`, nil},
		{"bad syslog tag", "[superd]\nsyslog_tag = \"a b\"\n", "superd.syslog_tag", "must be 1 to 48 printable characters without spaces", nil},
		{"relative syslog socket", "[superd]\nsyslog_socket = \"dev/log\"\n", "superd.syslog_socket", `syslog socket "dev/log" must be an absolute path`, nil},
		{"bad shutdown_grace", "[superd]\nshutdown_grace = \"soon\"\n", "superd.shutdown_grace", `invalid duration "soon"`, nil},
		{"shutdown_grace too long", "[superd]\nshutdown_grace = \"2562047h47m16s\"\n", "superd.shutdown_grace", `shutdown_grace "2562047h47m16s" is longer than the maximum 1h0m0s`, nil},
		{"bad upgrade_timeout", "[superd]\nupgrade_timeout = 30\n", "superd.upgrade_timeout", `must be a duration string`, nil},
		{"zero upgrade_timeout", "[superd]\nupgrade_timeout = \"0s\"\n", "superd.upgrade_timeout", `upgrade_timeout must be positive`, nil},
		{"upgrade_timeout too long", "[superd]\nupgrade_timeout = \"11m\"\n", "superd.upgrade_timeout", `upgrade_timeout "11m" is longer than the maximum 10m0s`, nil},
		{"shutdown_grace over an hour", "[superd]\nshutdown_grace = \"61m\"\n", "superd.shutdown_grace", `shutdown_grace "61m" is longer than the maximum 1h0m0s`, nil},
		{"bad include glob", "[superd]\ninclude = [\"[\"]\n", "superd.include", `"[" is not a valid glob pattern`, nil},
		{"superd not a table", "superd = 1\n", "superd", "must be a table, not an integer", nil},
		{"TOML syntax error", "[services.s]\nport = 7\nport = 8\n", "", "toml syntax error", nil},
		{"table nested too deep", "[services.s.a.b.c.d.e.f.g]\nport = 7\n", "", "nesting deeper than 8 levels: superd's configuration never nests that deep", nil},
		{"env nested too deep", svc(`env = {a={a={a={a={a={a="x"}}}}}}`), "", "nesting deeper than 8 levels", nil},
		{"args nested too deep", svc(`args = [[[[[["x"]]]]]]`), "", "nesting deeper than 8 levels", nil},
		{"array of tables", "[[services.s]]\nport = 7\n", "", "a service must be a table, not an array of tables", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := rootOpts()
			if tt.opts != nil {
				opts = *tt.opts
			}
			_, _, err := loadText(t, opts, tt.toml)
			errs := loadErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
			}
			e := errs[0]
			if !strings.Contains(e.Error(), tt.want) {
				t.Errorf("got  %v\nwant it to contain %q", e, tt.want)
			}
			if tt.key != "-" && e.Key != tt.key {
				t.Errorf("Key = %q, want %q (%v)", e.Key, tt.key, e)
			}
			if !strings.HasSuffix(e.File, "services.toml") {
				t.Errorf("File = %q, want the config file", e.File)
			}
			if e.Line == 0 {
				t.Errorf("no line number in %v", e)
			}
		})
	}
}
