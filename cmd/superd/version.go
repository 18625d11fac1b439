package main

import (
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// unknown is what `superd version` says for a field no source knows.
const unknown = "unknown"

// buildVersion decides the version and commit `superd version` prints.
// ldVersion and ldCommit are main.version and main.commit as make set
// them with -ldflags -X; they win, since make knows the release (git
// describe) even where the go command records no VCS data
// (GOFLAGS=-buildvcs=false, a tarball without .git). Otherwise the go
// command's build information: the main module's version when it has one
// (go install …@v1.2.3; not "(devel)"), and the VCS revision, cut to 12
// hex digits and marked "-dirty" for a modified work tree.
//
//	ldflags set   build info has           result
//	yes           anything                 ldflags
//	no            version / vcs.revision   those
//	no            "(devel)", no revision   "unknown"
func buildVersion(ldVersion, ldCommit string, info *debug.BuildInfo) (ver, commit string) {
	ver, commit = ldVersion, ldCommit
	if info != nil {
		if ver == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			ver = strings.TrimPrefix(info.Main.Version, "v")
		}
		if commit == "" {
			commit = vcsCommit(info.Settings)
		}
	}
	if ver == "" {
		ver = unknown
	}
	if commit == "" {
		commit = unknown
	}
	return ver, commit
}

// vcsCommit returns the short revision recorded by the go command, with
// "-dirty" when the work tree had local changes; "" when none was
// recorded.
func vcsCommit(settings []debug.BuildSetting) string {
	var rev string
	var modified bool
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}

// buildInfo is the go command's build information; nil without any.
func buildInfo() *debug.BuildInfo {
	info, _ := debug.ReadBuildInfo()
	return info
}

// versionLine is what `superd version` prints, e.g.
// "superd 0.1.0 (commit abc1234, go1.26.8)".
func versionLine() string {
	ver, commit := buildVersion(version, commit, buildInfo())
	return fmt.Sprintf("superd %s (commit %s, %s)", ver, commit, runtime.Version())
}

// The texts of `superd run --help` and `superd check --help`. The usage
// line and the flag list come from the flag set itself, so they cannot
// drift from the flags.
const (
	runAbout = `Run superd in the foreground: bind every socket of the configuration,
start a handler for each connection, reload on SIGHUP, and stop on
SIGTERM or SIGINT after giving handlers shutdown_grace to finish. It
never forks into the background; systemd (or another supervisor) does
that. An invalid configuration prints every error and exits 1 before
anything is bound.`
	runExample = `  superd run --config /etc/superd/services.toml --log stderr`

	checkAbout = `Validate the configuration without binding anything: resolve ports,
users and groups, check that every handler exists and is executable and
that no file gives someone else root, then print one line per service
with its effective settings, followed by any warnings. Exit status 0
when the configuration is valid; otherwise every error is printed, each
naming file, line, service and key, and the exit status is 1.`
	checkExample = `  superd check --config /etc/superd/services.toml && systemctl reload superd`
)

// usageFunc returns a flag.FlagSet Usage function printing a usage line,
// what the command does, its flags with their defaults, and an example,
// in place of the flag package's raw dump.
func usageFunc(fs *flag.FlagSet, about, example string) func() {
	return func() {
		var synopsis, options strings.Builder
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg == "string" { // no `name` in the usage: the flag package's type name
				arg = "value"
			}
			left := "--" + f.Name
			if arg != "" {
				left += " " + arg
			}
			if f.DefValue != "" && f.DefValue != "false" {
				usage += " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(&synopsis, " [%s]", left)
			fmt.Fprintf(&options, "  %-16s %s\n", left, usage)
		})
		fmt.Fprintf(fs.Output(), "Usage: superd %s%s\n\n%s\n\nOptions:\n%s\nExample:\n%s\n",
			fs.Name(), synopsis.String(), about, options.String(), example)
	}
}
