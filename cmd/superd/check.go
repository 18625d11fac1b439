package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/superd/superd/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageFunc(fs, checkAbout, checkExample)
	path := fs.String("config", defaultConfig, "configuration `file`")
	if status, done := parseFlags(fs, args); done {
		return status
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	printConfig(stdout, cfg)
	return 0
}

// printConfig prints one line per service with its effective settings,
// defaults included, so that an administrator sees what will run.
func printConfig(w io.Writer, cfg *config.Config) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tLISTEN\tMODE\tUSER\tHANDLER\tLIMITS")
	for _, svc := range cfg.Services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			svc.Name, svc.Listen.String(), modeOf(svc), userOf(svc), handler(svc), limits(svc))
	}
	tw.Flush()
	for _, warn := range cfg.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	if enabled(cfg) == 0 {
		// Valid, but a reload with it closes everything: say so before
		// an empty or half-saved file reaches a running superd.
		fmt.Fprintf(w, "warning: %s: no enabled services: superd would listen on nothing\n", cfg.Global.Files[0])
	}
	if g := cfg.Global; g.Metrics != "" {
		line := "metrics: served on " + g.Metrics + " at /metrics"
		if g.MetricsAllowRemote {
			line += " (metrics_allow_remote: other hosts may connect)"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "%s: %s, configuration OK\n", cfg.Global.Files[0], plural(len(cfg.Services), "service"))
}

// plural is "1 service", "2 services".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// enabled counts the services that are not disabled.
func enabled(cfg *config.Config) int {
	n := 0
	for _, svc := range cfg.Services {
		if !svc.Disabled {
			n++
		}
	}
	return n
}

func modeOf(svc *config.Service) string {
	m := "nowait"
	switch {
	case svc.Builtin != "":
		m = "builtin" // served inside superd: wait does not apply
	case svc.Wait:
		m = "wait"
	}
	if svc.Disabled {
		m += ",disabled"
	}
	return m
}

func userOf(svc *config.Service) string {
	c := svc.Exec.Cred
	switch {
	case svc.Builtin != "":
		return "-"
	case !c.Set:
		return "(superd's)"
	}
	return fmt.Sprintf("%s(%d:%d)", c.User, c.Uid, c.Gid)
}

func handler(svc *config.Service) string {
	if svc.Builtin != "" {
		return "builtin:" + svc.Builtin
	}
	return strings.Join(append([]string{svc.Exec.Path}, svc.Exec.Argv[1:]...), " ")
}

func limits(svc *config.Service) string {
	l := svc.Limits
	parts := []string{"instances=" + strconv.Itoa(l.Instances)}
	parts = append(parts, "per_source="+orNone(l.PerSource > 0, strconv.Itoa(l.PerSource)))
	parts = append(parts, "rate="+orNone(l.Rate > 0, strconv.FormatFloat(l.Rate, 'g', -1, 64)))
	parts = append(parts, "timeout="+orNone(l.Timeout > 0, l.Timeout.String()))
	backlog := "somaxconn"
	if svc.Backlog > 0 {
		backlog = strconv.Itoa(svc.Backlog)
	}
	parts = append(parts, "backlog="+backlog)
	e := svc.Exec
	if e.Umask >= 0 && svc.Builtin == "" {
		parts = append(parts, fmt.Sprintf("umask=%03o", e.Umask))
	}
	if e.SetNice {
		parts = append(parts, "nice="+strconv.Itoa(e.Nice))
	}
	for _, r := range e.Rlimits {
		v := strconv.FormatUint(r.Value, 10)
		if r.Value == config.RlimInfinity {
			v = "unlimited"
		}
		parts = append(parts, r.Name+"="+v)
	}
	if !svc.Access.Empty() {
		parts = append(parts, fmt.Sprintf("only_from=%v no_access=%v", svc.Access.OnlyFrom, svc.Access.NoAccess))
	}
	if p := svc.Proxy; p.Enabled {
		parts = append(parts, fmt.Sprintf("proxy_protocol proxy_from=%v proxy_timeout=%v", p.From, p.Timeout))
	}
	if svc.ReusePort {
		parts = append(parts, "reuse_port")
	}
	return strings.Join(parts, " ")
}

// orNone returns v, or "none" for a limit that is off.
func orNone(set bool, v string) string {
	if set {
		return v
	}
	return "none"
}
