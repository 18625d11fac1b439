// Command superd is a superserver in the tradition of inetd, xinetd and
// tcpserver: it owns the sockets listed in services.toml and starts a
// handler process per connection, or hands a socket to a long-lived
// handler in wait mode.
//
// main is the only place that reads os.Args, wires the packages together
// and calls os.Exit.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/superd/superd/config"
	"github.com/superd/superd/internal/logging"
	"github.com/superd/superd/internal/metrics"
	"github.com/superd/superd/services"
	"github.com/superd/superd/services/confine"
	"github.com/superd/superd/services/proc"
	"github.com/superd/superd/supervisor"
	"github.com/superd/superd/supervisor/upgrade"
)

// version and commit are superd's release and source revision, set by
// make with -ldflags "-X main.version=… -X main.commit=…" and never
// changed at run time; empty in a plain go build, where versionLine falls
// back to the go command's build information.
var (
	version string
	commit  string
)

// defaultConfig is where superd looks for its configuration.
const defaultConfig = "/etc/superd/services.toml"

const usageText = `superd is a superserver: it listens on the sockets listed in its
configuration and starts a handler process for each connection.

Usage:
  superd run [--config PATH] [--log stderr|syslog|journal]
        run in the foreground (it never forks into the background)
  superd check [--config PATH]
        validate the configuration without binding anything
  superd convert [--from inetd|xinetd] FILE...
        print inetd.conf or xinetd configuration as services.toml
  superd status [--metrics ADDR] [--config PATH]
        show every service's handlers and connections, from the metrics
  superd version
        print the version

The default configuration is ` + defaultConfig + `.
Run "superd run --help" or "superd check --help" for their options.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	switch args[0] {
	case confine.Command:
		confine.Run(args[1:]) // returns only on failure, reported
		return 127
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "convert":
		return cmdConvert(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	}
	fmt.Fprintf(stderr, "superd: unknown command %q\n\n%s", args[0], usageText)
	return 2
}

// parseFlags parses a subcommand's flags; done is true when the caller
// should return status at once (help asked, or bad flags).
func parseFlags(fs *flag.FlagSet, args []string) (status int, done bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, true
	case err != nil:
		return 2, true
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "superd %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, true
	}
	return 0, false
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageFunc(fs, runAbout, runExample)
	path := fs.String("config", defaultConfig, "configuration `file`")
	logTo := fs.String("log", "", "where to log: stderr, syslog or journal (default: the configuration's log setting)")
	if status, done := parseFlags(fs, args); done {
		return status
	}
	upgradePath := startPath(os.Args[0])
	sigs := catchSignals()
	defer sigs.release()
	// Started by an upgrade: the old superd passed its sockets as
	// systemd does, but could not set LISTEN_PID; FromEnv does.
	pred, err := upgrade.FromEnv()
	if err != nil {
		// The sockets passed with the variables would stay open and
		// unserved, clients waiting in their backlogs for nobody.
		fmt.Fprintf(stderr, "superd: %v: not starting (unset SUPERD_UPGRADE_FD and SUPERD_UPGRADE_PID to start afresh)\n", err)
		return 1
	}
	// Socket activation: the sockets systemd (or the old superd of an
	// upgrade) passed (LISTEN_FDS), taken before anything else can open
	// a descriptor, and the variables unset so that no handler sees
	// them. They come close-on-exec; the supervisor owns them from New
	// on, except the metrics socket of an upgrade, which is main's.
	inherited := activation.Files(true)
	metricsFile, inherited := takeNamed(inherited, metricsFDName)
	if err := closeOnExecInherited(); err != nil {
		fmt.Fprintln(stderr, "superd: cannot mark inherited descriptors close-on-exec:", err)
		return 1
	}
	if *logTo != "" && !slices.Contains(logging.Targets(), *logTo) {
		fmt.Fprintf(stderr, "superd run: --log must be %s, not %q\n", joinOr(logging.Targets()), *logTo)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	g := cfg.Global
	opts := logging.Options{Target: g.Log, Facility: g.SyslogFacility, Tag: g.SyslogTag, Socket: g.SyslogSocket}
	if *logTo != "" {
		opts.Target = *logTo
	}
	log, closeLog, err := logging.New(opts, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "superd:", err)
		return 1
	}
	defer closeLog()
	for _, w := range cfg.Warnings {
		log.Warn("config_warning", "warning", w.Error())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "superd: cannot find its own executable:", err)
		return 1
	}
	// The confinement trampoline is this very binary, even after an
	// upgrade replaced or deleted the file at self.
	exe, err := confine.OpenExecutable()
	if err != nil {
		fmt.Fprintln(stderr, "superd:", err)
		return 1
	}
	defer exe.Close()
	// Bound before READY, and before anything else can fail on it.
	var reg *metrics.Registry
	up := &supervisor.UpgradeOptions{Path: upgradePath, Argv: os.Args}
	if g.Metrics != "" {
		reg = metrics.New(buildVersion(version, commit, buildInfo()))
		ms, err := serveMetrics(g.Metrics, metricsFile, reg.Handler(), log)
		if err != nil {
			fmt.Fprintln(stderr, "superd:", err)
			return 1
		}
		defer ms.Close()
		up.Files = func() ([]*os.File, error) {
			f, err := ms.File()
			if err != nil {
				return nil, err
			}
			return []*os.File{f}, nil
		}
		up.HandedOver = ms.Close
	} else if metricsFile != nil {
		metricsFile.Close()
	}
	procs, err := proc.New()
	if err != nil {
		fmt.Fprintln(stderr, "superd:", err)
		return 1
	}
	watchdog, _ := daemon.SdWatchdogEnabled(false)
	sup := supervisor.New(cfg, supervisor.Options{
		Load:     func() (*config.Config, error) { return config.Load(*path) },
		Log:      log,
		Runtime:  &services.Runtime{Procs: procs, Self: self, Exe: exe, Euid: os.Geteuid(), Metrics: reg},
		Notify:   sdNotifier(os.Getenv("NOTIFY_SOCKET"), log),
		Watchdog: watchdog,
		// As PID 1 (of a container) superd inherits every orphan.
		ReapOrphans: os.Getpid() == 1,
		Inherited:   inherited,
		Upgrade:     up,
		Predecessor: pred,
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigDone := make(chan struct{})
	go func() {
		defer close(sigDone)
		sigs.serve(ctx, sup, stop, log)
	}()
	err = sup.Run(ctx)
	stop()
	<-sigDone
	if err != nil {
		log.Error("shutdown_incomplete", "err", err)
		return 1
	}
	return 0
}

// joinOr formats a list of choices: "a, b or c".
func joinOr(list []string) string {
	if len(list) < 2 {
		return strings.Join(list, "")
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

// printErrors prints every error of a failed Load, one a line.
func printErrors(w io.Writer, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	n := len(errs)
	for _, e := range errs {
		fmt.Fprintln(bw, e)
		if m := (*config.MoreErrors)(nil); errors.As(e, &m) {
			n += m.N - 1
		}
	}
	fmt.Fprintf(bw, "superd: %d error(s) in the configuration\n", n)
}
