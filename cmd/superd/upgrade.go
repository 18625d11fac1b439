package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// metricsFDName names the metrics socket among those an upgrade hands
// over: no service can have it ('/' is not allowed in service names).
const metricsFDName = "superd/metrics"

// takeNamed takes the file named name out of files.
func takeNamed(files []*os.File, name string) (*os.File, []*os.File) {
	i := slices.IndexFunc(files, func(f *os.File) bool { return f.Name() == name })
	if i < 0 {
		return nil, files
	}
	f := files[i]
	return f, slices.Delete(files, i, i+1)
}

// startPath is the path superd was started from, as the administrator
// gave it: argv[0] made absolute when it has a slash, else argv[0] looked
// up in PATH as the shell did. An upgrade runs the binary found there
// then, not the running one's inode (/proc/self/exe, which a package
// upgrade has replaced), so a symlink switched to a new version is
// followed. When neither works, the running binary's path.
func startPath(arg0 string) string {
	if strings.Contains(arg0, "/") {
		if p, err := filepath.Abs(arg0); err == nil {
			return p
		}
	} else if arg0 != "" {
		if p, err := exec.LookPath(arg0); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
		}
	}
	p, _ := os.Executable()
	return p
}
