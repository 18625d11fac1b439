// Package metricstest reads metric values in tests: from a Gatherer, or
// from an exposition in the Prometheus text format, which it parses
// whole with the Prometheus text parser (an error fails the test).
package metricstest

import (
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families is an exposition by metric name.
type Families map[string]*dto.MetricFamily

// Gather collects g, failing the test on an error.
func Gather(t testing.TB, g prometheus.Gatherer) Families {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	f := make(Families, len(mfs))
	for _, mf := range mfs {
		f[mf.GetName()] = mf
	}
	return f
}

// Parse parses an exposition in the text format, failing the test on an
// error: every line must be well-formed, every family consistent.
func Parse(t testing.TB, r io.Reader) Families {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	f, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return f
}

// Value returns the value of the series of name whose labels include
// labels (name, value pairs): a counter's or gauge's value, a
// histogram's sample count. It fails the test unless exactly one series
// matches.
func (f Families) Value(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, n := f.lookup(name, labels)
	if n != 1 {
		t.Fatalf("%d series of %s%v, want 1 (have %s)", n, name, labels, f.names())
	}
	return v
}

// Has reports whether a series of name has labels.
func (f Families) Has(name string, labels ...string) bool {
	_, n := f.lookup(name, labels)
	return n > 0
}

// Series counts the series that carry labels, in every family.
func (f Families) Series(labels ...string) int {
	n := 0
	for name := range f {
		_, k := f.lookup(name, labels)
		n += k
	}
	return n
}

func (f Families) lookup(name string, labels []string) (v float64, n int) {
	mf := f[name]
	if mf == nil {
		return 0, 0
	}
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		n++
		switch {
		case m.GetCounter() != nil:
			v = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			v = m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			v = float64(m.GetHistogram().GetSampleCount())
		case m.GetUntyped() != nil:
			v = m.GetUntyped().GetValue()
		}
	}
	return v, n
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (f Families) names() string {
	var names []string
	for n := range f {
		if strings.HasPrefix(n, "superd_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}
