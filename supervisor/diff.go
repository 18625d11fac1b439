package supervisor

import (
	"cmp"
	"reflect"
	"slices"

	"github.com/superd/superd/config"
)

// plan is what it takes to go from the running set to a configuration.
// Every list is sorted by service name (close by key), so that what a
// reload logs and does is the same from run to run.
type plan struct {
	// bind lists the services whose listen identity does not run yet: a
	// socket to bind and a Listener to start.
	bind []*config.Service
	// keep lists the services that run with exactly these settings.
	keep []*config.Service
	// update lists the services whose identity runs with other settings
	// (a rename or a mode change included): the Listener keeps its
	// socket, its backlog and its admission state, and takes the new
	// settings.
	update []*config.Service
	// close lists the identities that run but are no longer wanted.
	close []config.ListenKey
}

// diff works out the plan from running (the settings each running
// identity serves) to the enabled services of next. It is a pure
// function: it neither binds nor closes anything.
//
// Identity is the ListenKey alone, as in tableflip and caddy's listener
// reuse: a service renamed, or switched from nowait to wait, on the same
// address keeps its socket and the clients waiting in its backlog. Two
// settings are the same when they are equal field by field after
// config.Load normalised them; a reload of an unchanged file keeps
// everything.
func diff(running map[config.ListenKey]*config.Service, next []*config.Service) plan {
	var p plan
	want := make(map[config.ListenKey]bool, len(next))
	for _, svc := range next {
		if svc.Disabled {
			continue
		}
		want[svc.Listen] = true
		cur, ok := running[svc.Listen]
		switch {
		case !ok:
			p.bind = append(p.bind, svc)
		case reflect.DeepEqual(cur, svc):
			p.keep = append(p.keep, svc)
		default:
			p.update = append(p.update, svc)
		}
	}
	for key := range running {
		if !want[key] {
			p.close = append(p.close, key)
		}
	}
	byName := func(a, b *config.Service) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(p.bind, byName)
	slices.SortFunc(p.keep, byName)
	slices.SortFunc(p.update, byName)
	slices.SortFunc(p.close, func(a, b config.ListenKey) int {
		return cmp.Or(cmp.Compare(running[a].Name, running[b].Name), cmp.Compare(a.String(), b.String()))
	})
	return p
}
