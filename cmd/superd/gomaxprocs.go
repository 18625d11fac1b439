package main

import (
	"os"
	"runtime"
)

// superd's work per connection is system calls (accept, clone, exec,
// close, wait) that the kernel and Go's fork lock serialize anyway; a
// second P only adds hand-offs between threads. Measured on 2 cores
// (docs/performance.md, "GOMAXPROCS"): one P serves 8–10% more
// connections per second on the handler path at c = 1, 8 and 64, with a
// quarter less daemon CPU per connection, and the built-in echo is level
// or ahead. GOMAXPROCS in the environment still decides, for whoever
// wants built-ins spread over more cores.
func init() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
