package pages

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSmaps(t *testing.T) {
	b, err := os.ReadFile("testdata/smaps")
	if err != nil {
		t.Fatal(err)
	}
	maps, err := parseSmaps(b)
	if err != nil {
		t.Fatal(err)
	}
	dev := unix.Mkdev(0xfe, 0)
	tests := []struct {
		start uintptr
		rssKB int
		clean bool
		why   string
	}{
		{0x400000, 896, true, "text"},
		{0x8f7000, 192, true, "read-only data"},
		{0xe42000, 360, false, "writable data"},
		{0xeac000, 16, false, "relocated read-only data (RELRO): anonymous pages"},
		{0xeb0000, 16, false, "locked"},
		{0xeb4000, 16, false, "no Anonymous line: nothing says it is the file's"},
		{0x7f0f33602000, 20, false, "anonymous mapping"},
		{0x7f0f337fe000, 16, false, "shared mapping"},
		{0x7ffd1a3f2000, 0, false, "no file"},
	}
	if len(maps) != len(tests) {
		t.Fatalf("parsed %d mappings, want %d: %+v", len(maps), len(tests), maps)
	}
	for i, tt := range tests {
		m := maps[i]
		if m.start != tt.start || m.rssKB != tt.rssKB || m.clean() != tt.clean {
			t.Errorf("mapping %d (%s): start %#x rss %d kB clean %v, want %#x %d kB %v",
				i, tt.why, m.start, m.rssKB, m.clean(), tt.start, tt.rssKB, tt.clean)
		}
	}
	if maps[0].dev != dev || maps[0].ino != 10297700 {
		t.Errorf("text: dev %#x ino %d, want %#x 10297700", maps[0].dev, maps[0].ino, dev)
	}
}

func TestParseSmapsMalformed(t *testing.T) {
	for _, in := range []string{
		"Rss: 4 kB\n", // a field before any mapping
		"00400000 r-xp 00000000 fe:00 1 /x\n",
		"00400000-zz r-xp 00000000 fe:00 1 /x\n",
		"00400000-00300000 r-xp 00000000 fe:00 1 /x\n",
		"00400000-00500000 r-xp 00000000 fe00 1 /x\n",
		"00400000-00500000 r-xp 00000000 fe:00\n",
	} {
		if _, err := parseSmaps([]byte(in)); err == nil {
			t.Errorf("parseSmaps(%q): no error", in)
		}
	}
}

// TestDropExecutable drops this test binary's own pages and goes on
// running: the pages come back from the page cache as they are used.
func TestDropExecutable(t *testing.T) {
	d, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before := rssFileKB(t)
	dropped, err := d.Drop()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if dropped <= 0 || after >= before {
		t.Errorf("dropped %d bytes: RssFile %d kB before, %d kB after", dropped, before, after)
	}
	t.Logf("dropped %d KiB; RssFile %d → %d kB", dropped>>10, before, after)
	// Code and data the drop unmapped still work, and a second drop
	// reads smaps anew through the same descriptor.
	if _, err := parseSmaps([]byte("00400000-00500000 r-xp 00000000 fe:00 1 /x\n")); err != nil {
		t.Fatal(err)
	}
	if again, err := d.Drop(); err != nil || again <= 0 {
		t.Errorf("second Drop = %d, %v; want the pages mapped again since", again, err)
	}
}

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(b, []byte("\nRssFile:"))
	if !ok {
		t.Fatal("/proc/self/status: no RssFile")
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	n, err := strconv.Atoi(string(bytes.Fields(line)[0]))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
