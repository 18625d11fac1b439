package admit

import (
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// denialInterval is the least time between two refused lines of one
// reason.
const denialInterval = time.Second

// denials logs refused connections at most once a denialInterval per
// reason, so that a flood cannot fill the disk; each line carries the
// number of refusals it stands for (count) and the last refused client
// among them (remote). Refusals held back are logged by a timer at the
// end of their interval, so the count of a flood's tail is not lost.
//
// The timers are the denials' own: close logs what they hold back and
// stops them, and nothing logs after it. Its zero value is ready to use.
type denials struct {
	mu     sync.Mutex
	closed bool
	byWhy  map[string]*denial
}

// denial is the summary of one reason.
type denial struct {
	last   time.Time    // when the last line was logged
	count  int          // refusals since
	remote string       // the last refused client
	log    *slog.Logger // the logger of the last refusal
	timer  *time.Timer  // the pending flush; nil when none is set
}

func (d *denials) log(log *slog.Logger, reason, remote string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if d.byWhy == nil {
		d.byWhy = make(map[string]*denial)
	}
	r := d.byWhy[reason]
	if r == nil {
		r = &denial{}
		d.byWhy[reason] = r
	}
	r.count++
	r.remote, r.log = remote, log
	wait := denialInterval - time.Since(r.last)
	if wait <= 0 {
		r.flush(reason)
		return
	}
	if r.timer == nil {
		r.timer = time.AfterFunc(wait, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.closed {
				return // close flushed it already
			}
			r.timer = nil
			r.flush(reason)
		})
	}
}

// flush logs the refusals held back, if any; d.mu is held.
func (r *denial) flush(reason string) {
	if r.count == 0 {
		return
	}
	r.log.Warn("refused", "reason", reason, "remote", r.remote, "count", r.count)
	r.last, r.count = time.Now(), 0
}

// close logs every summary still held back, stops the flush timers, and
// makes later refusals go unlogged. A timer that already fired and waits
// for the lock finds closed set and logs nothing.
func (d *denials) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	for _, reason := range slices.Sorted(maps.Keys(d.byWhy)) {
		r := d.byWhy[reason]
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
		r.flush(reason)
	}
}
