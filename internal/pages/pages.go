// Package pages gives back to the kernel the pages of superd's own
// executable that start-up mapped and the running daemon does not use.
//
// The kernel maps a program's text and read-only data many pages at a
// time (fault-around): start-up, which runs every package's
// initialisation, the TOML decoder and the Prometheus client's
// registration, leaves most of the binary mapped, and an idle superd
// would keep those pages in its resident set for good. They are clean
// copies of the file, so unmapping them loses nothing: a page the daemon
// touches again comes back from the page cache on its next use, as it
// would after the kernel had reclaimed it.
package pages

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dropper unmaps the resident pages of the running executable's
// mappings that hold nothing but the file's own pages: read only, not
// locked, and without one anonymous (copy-on-write) page. A dynamically
// linked build's relocated read-only data (RELRO) and a page a debugger
// patched are such copies, and dropping them would lose what was
// written: they are kept.
//
// It holds /proc/self/smaps open from Open to Close, so that a drop opens
// no descriptor: superd drops after READY, and whoever counts its
// descriptors then (a test, a monitor) must not see one come and go.
type Dropper struct {
	smaps    *os.File
	dev, ino uint64 // the executable's
}

// Open returns a Dropper for the running executable; the caller closes
// it.
func Open() (*Dropper, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return nil, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	return &Dropper{smaps: f, dev: st.Dev, ino: st.Ino}, nil
}

// Close closes the Dropper's descriptor.
func (d *Dropper) Close() error { return d.smaps.Close() }

// Drop unmaps the executable's clean pages (see Dropper) and returns how
// many resident bytes it gave back.
func (d *Dropper) Drop() (int, error) {
	// smaps is generated anew from offset 0 at every read.
	if _, err := d.smaps.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	smaps, err := io.ReadAll(d.smaps)
	if err != nil {
		return 0, err
	}
	maps, err := parseSmaps(smaps)
	if err != nil {
		return 0, err
	}
	dropped := 0
	for _, m := range maps {
		if !m.clean() || m.dev != d.dev || m.ino != d.ino {
			continue
		}
		// The range is no Go memory, so it goes to madvise as numbers:
		// unix.Madvise takes a []byte.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return dropped, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		dropped += m.rssKB << 10
	}
	return dropped, nil
}

// mapping is one mapping of /proc/self/smaps, with the fields that say
// whether its pages are the file's.
type mapping struct {
	start, end uintptr
	perms      string
	dev, ino   uint64
	rssKB      int
	anonKB     int
	locked     bool // VmFlags has "lo"
}

// clean reports whether every resident page of m is an unmodified page
// of its file, which the kernel can map again at any time.
func (m mapping) clean() bool {
	return len(m.perms) == 4 && m.perms[1] != 'w' && m.perms[3] == 'p' &&
		m.ino != 0 && m.anonKB == 0 && !m.locked
}

// parseSmaps reads the mappings of an smaps file: a header line
// ("start-end perms offset major:minor inode path") and then "Key: value"
// lines for each.
func parseSmaps(b []byte) ([]mapping, error) {
	var maps []mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		key, val, isField := bytes.Cut(line, []byte(":"))
		if isField && len(bytes.Fields(key)) == 1 && !bytes.Contains(key, []byte("-")) {
			if len(maps) == 0 {
				return nil, fmt.Errorf("smaps: %q before any mapping", line)
			}
			m := &maps[len(maps)-1]
			switch string(key) {
			case "Rss":
				m.rssKB = kB(val)
			case "Anonymous":
				m.anonKB = kB(val)
			case "VmFlags":
				for _, f := range bytes.Fields(val) {
					m.locked = m.locked || string(f) == "lo"
				}
			}
			continue
		}
		m, err := parseHeader(line)
		if err != nil {
			return nil, err
		}
		maps = append(maps, m)
	}
	return maps, sc.Err()
}

// kB reads " 4416 kB"; -1 when it is not a number, which no mapping is
// then clean for (see clean: anonKB must be 0).
func kB(val []byte) int {
	f := bytes.Fields(val)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return -1
	}
	return n
}

// parseHeader reads "start-end perms offset major:minor inode [path]".
func parseHeader(line []byte) (mapping, error) {
	bad := fmt.Errorf("smaps: malformed mapping %q", line)
	f := bytes.Fields(line)
	if len(f) < 5 {
		return mapping{}, bad
	}
	lo, hi, ok1 := bytes.Cut(f[0], []byte("-"))
	major, minor, ok2 := bytes.Cut(f[3], []byte(":"))
	if !ok1 || !ok2 {
		return mapping{}, bad
	}
	var n [5]uint64
	for i, s := range []struct {
		b    []byte
		base int
	}{{lo, 16}, {hi, 16}, {major, 16}, {minor, 16}, {f[4], 10}} {
		v, err := strconv.ParseUint(string(s.b), s.base, 64)
		if err != nil {
			return mapping{}, bad
		}
		n[i] = v
	}
	if n[1] <= n[0] || n[2] > 0xfff || n[3] > 0xfffff {
		return mapping{}, bad
	}
	return mapping{
		start: uintptr(n[0]), end: uintptr(n[1]),
		perms:  string(f[1]),
		dev:    unix.Mkdev(uint32(n[2]), uint32(n[3])),
		ino:    n[4],
		anonKB: -1, // until its Anonymous line says otherwise
	}, nil
}
