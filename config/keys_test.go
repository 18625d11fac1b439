package config

import (
	"slices"
	"testing"

	"github.com/superd/superd/services/builtin"
)

// TestKeyTablesHaveUniqueNames checks that no key table names a key
// twice: findKey takes the first row, so a second one would be dead.
func TestKeyTablesHaveUniqueNames(t *testing.T) {
	tables := map[string][]string{
		"service":  serviceKeys(),
		"[superd]": keyNames(globalKeys()),
		"limits":   keyNames(limitKeys()),
	}
	for table, names := range tables {
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Errorf("%s keys: %q is listed twice", table, n)
			}
			seen[n] = true
		}
	}
}

// TestBuiltinNamesMatchPackage checks that the builtin key accepts
// exactly the services package builtin serves. config keeps its own list
// for the order its error message gives them in.
func TestBuiltinNamesMatchPackage(t *testing.T) {
	got, want := slices.Sorted(slices.Values(builtins())), slices.Sorted(slices.Values(builtin.Names()))
	if !slices.Equal(got, want) {
		t.Errorf("builtin key accepts %q, package builtin serves %q", got, want)
	}
	for _, n := range builtins() {
		if !builtin.Valid(n) {
			t.Errorf("builtin.Valid(%q) = false, but the builtin key accepts it", n)
		}
	}
}
