package main

import "github.com/superd/superd/internal/testkit"

// newHelpers returns the handler programs the integration tests
// configure, as `path = "%HELPER%"`, `args = ["NAME", ...]`: the copy
// of this test binary that TestMain puts at bin.helper, which superd
// starts with argv[0] "helper". Each writes to fd 1, the connection,
// with raw system calls, so that a socket left non-blocking shows up as
// EAGAIN instead of being papered over by Go's poller (see testkit for
// what each one says).
func newHelpers() *testkit.Helpers {
	h := testkit.NewHelpers()
	for name, fn := range map[string]func([]string) int{
		"describe":    testkit.Describe,
		"readline":    testkit.Readline,
		"udp-reply":   testkit.UDPReply,
		"tcp-accept":  testkit.TCPAcceptPID,
		"accept-loop": testkit.TCPAcceptLoop,
		"sleep":       testkit.Sleep, // also run by grandchild and fork-hang
		"ignore-term": testkit.IgnoreTerm,
		"exit":        testkit.Exit,
		"grandchild":  testkit.Grandchild,
		"close-hang":  testkit.CloseHang,
		"crash":       testkit.Crash,
		"fork-hang":   testkit.ForkHang,
		"stream":      testkit.Stream,
	} {
		h.Register(name, fn)
	}
	return h
}
