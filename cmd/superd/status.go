package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/superd/superd/config"
)

// defaultMetricsAddr is where superd status looks when neither
// --metrics nor the configuration says.
const defaultMetricsAddr = "127.0.0.1:9911"

// statusTimeout bounds the whole exchange with superd.
const statusTimeout = 5 * time.Second

// maxExposition bounds what superd status reads: far more than the
// metrics of thousands of services.
const maxExposition = 256 << 20

const (
	statusAbout = `Show every service superd runs, from its Prometheus metrics: where it
listens, its mode, its handlers running now, the connections it accepted
and refused since superd started, and when a handler last exited. It
needs [superd] metrics in the configuration. The address is --metrics,
else the configuration's [superd] metrics, else ` + defaultMetricsAddr + `.`
	statusExample = `  superd status --metrics 127.0.0.1:9911`
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageFunc(fs, statusAbout, statusExample)
	addr := fs.String("metrics", "", "the metrics address, `ADDR` as host:port (default: the configuration's [superd] metrics, else "+defaultMetricsAddr+")")
	path := fs.String("config", defaultConfig, "configuration `file` to take the metrics address from")
	if status, done := parseFlags(fs, args); done {
		return status
	}
	if *addr == "" {
		*addr = metricsAddrOf(*path, stderr)
	}
	url := "http://" + dialable(*addr) + "/metrics"
	families, err := fetchMetrics(url)
	if err != nil {
		fmt.Fprintf(stderr, "superd status: %v\nIs superd running with [superd] metrics = %q?\n", err, *addr)
		return 1
	}
	st, err := statusOf(families)
	if err != nil {
		fmt.Fprintf(stderr, "superd status: %s: %v\n", url, err)
		return 1
	}
	printStatus(stdout, st, time.Now())
	return 0
}

// metricsAddrOf returns the [superd] metrics address of the
// configuration at path, or defaultMetricsAddr when it sets none. A
// configuration that cannot be loaded (a missing one is fine) is
// reported on stderr: the default may be the wrong address then.
func metricsAddrOf(path string, stderr io.Writer) string {
	cfg, err := config.Load(path)
	switch {
	case err == nil && cfg.Global.Metrics != "":
		return cfg.Global.Metrics
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stderr, "superd status: cannot take the metrics address from %s (superd check shows why): trying %s\n", path, defaultMetricsAddr)
	}
	return defaultMetricsAddr
}

// dialable turns a listening address into one to connect to: the
// wildcard (an empty host, 0.0.0.0, ::) is reached on loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		if ip.Is4() {
			return net.JoinHostPort("127.0.0.1", port)
		}
		return net.JoinHostPort("::1", port)
	}
	return addr
}

// fetchMetrics gets url and parses the exposition in the text format.
func fetchMetrics(url string) (map[string]*dto.MetricFamily, error) {
	client := &http.Client{Timeout: statusTimeout}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		// The *url.Error repeats the method and the URL.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s: not superd's metrics", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxExposition))
	if err != nil {
		return nil, fmt.Errorf("%s: cannot parse the metrics: %w", url, err)
	}
	return families, nil
}

// serviceStatus is one row of the table.
type serviceStatus struct {
	name, listen, mode         string
	running, accepted, refused float64
	lastExit                   float64 // Unix time; 0 for none
}

// superdStatus is what superd status shows.
type superdStatus struct {
	version, commit string
	services        []*serviceStatus // sorted by name
}

// statusOf reads the table from the metrics. Every service with series
// has a row; one without superd_service_info (its socket not bound yet)
// shows "-" for listen and mode.
func statusOf(families map[string]*dto.MetricFamily) (*superdStatus, error) {
	build := families["superd_build_info"]
	if build == nil || len(build.GetMetric()) == 0 {
		return nil, errors.New("no superd_build_info: not superd's metrics")
	}
	st := &superdStatus{
		version: labelOf(build.GetMetric()[0], "version"),
		commit:  labelOf(build.GetMetric()[0], "commit"),
	}
	byName := map[string]*serviceStatus{}
	row := func(m *dto.Metric) *serviceStatus {
		name := labelOf(m, "service")
		s := byName[name]
		if s == nil {
			s = &serviceStatus{name: name, listen: "-", mode: "-"}
			byName[name] = s
		}
		return s
	}
	each := func(name string, f func(*serviceStatus, *dto.Metric)) {
		for _, m := range families[name].GetMetric() {
			f(row(m), m)
		}
	}
	each("superd_service_info", func(s *serviceStatus, m *dto.Metric) {
		s.listen, s.mode = labelOf(m, "listen"), labelOf(m, "mode")
	})
	each("superd_handlers_running", func(s *serviceStatus, m *dto.Metric) { s.running = valueOf(m) })
	each("superd_connections_accepted_total", func(s *serviceStatus, m *dto.Metric) { s.accepted = valueOf(m) })
	each("superd_connections_refused_total", func(s *serviceStatus, m *dto.Metric) { s.refused += valueOf(m) })
	each("superd_handler_last_exit_timestamp_seconds", func(s *serviceStatus, m *dto.Metric) { s.lastExit = valueOf(m) })
	for _, s := range byName {
		st.services = append(st.services, s)
	}
	slices.SortFunc(st.services, func(a, b *serviceStatus) int { return strings.Compare(a.name, b.name) })
	return st, nil
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func valueOf(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// printStatus prints st as a table, ages counted up to now.
func printStatus(w io.Writer, st *superdStatus, now time.Time) {
	fmt.Fprintf(w, "superd %s (commit %s): %s\n", st.version, st.commit, plural(len(st.services), "service"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tLISTEN\tMODE\tRUNNING\tACCEPTED\tREFUSED\tLAST-EXIT")
	for _, s := range st.services {
		accepted := count(s.accepted)
		if s.mode == "wait" {
			accepted = "-" // the handler accepts: superd never sees them
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.name, s.listen, s.mode,
			count(s.running), accepted, count(s.refused), age(s.lastExit, now))
	}
	tw.Flush()
}

// count formats a counter or gauge value, an integer in practice.
func count(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// age formats how long before now the Unix time ts was, in its two
// largest units: "3s ago", "4m12s ago", "2h5m ago", "3d4h ago"; "-" for
// no time (0).
func age(ts float64, now time.Time) string {
	if ts <= 0 {
		return "-"
	}
	d := now.Sub(time.Unix(0, int64(ts*1e9))).Truncate(time.Second)
	if d < 0 {
		d = 0 // clocks disagree: superd's is ahead
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds ago", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds ago", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm ago", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh ago", s/86400, s%86400/3600)
}
