//go:build !race

package logging

// raceEnabled says the race detector is on (see format_race_test.go).
const raceEnabled = false
