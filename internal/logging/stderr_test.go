package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"
)

func TestStderrHandlerSlogtest(t *testing.T) {
	var buf *bytes.Buffer
	slogtest.Run(t,
		func(*testing.T) slog.Handler {
			buf = &bytes.Buffer{}
			return newStderrHandler(buf, slog.LevelInfo)
		},
		func(t *testing.T) map[string]any {
			line, ok := strings.CutSuffix(buf.String(), "\n")
			if !ok || strings.Contains(line, "\n") {
				t.Fatalf("got %q, want one line", buf.String())
			}
			return renameEvent(t, parseKV(t, line))
		})
}

func TestNewStderr(t *testing.T) {
	for _, target := range []string{"stderr", ""} {
		var stderr bytes.Buffer
		l, closeLog, err := New(Options{Target: target, Level: slog.LevelWarn}, &stderr)
		if err != nil {
			t.Fatalf("target %q: %v", target, err)
		}
		l.Info("hidden")
		l.Warn("shown", "k", "v")
		if got, want := stderr.String(), " level=WARN event=shown k=v\n"; !strings.HasPrefix(got, "time=") || !strings.HasSuffix(got, want) || strings.Count(got, "\n") != 1 {
			t.Errorf("target %q: got %q, want one line time=…%s", target, got, want)
		}
		if err := closeLog(); err != nil {
			t.Errorf("target %q: close: %v", target, err)
		}
	}
}
