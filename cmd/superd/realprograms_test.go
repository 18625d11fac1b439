package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/superd/superd/internal/testkit"
)

// The TestReal* tests run real inetd programs from Debian packages under
// the real superd binary, with the configurations the README shows: git
// daemon --inetd, in.tftpd (tftpd-hpa) in wait mode, busybox httpd -i,
// rsync --daemon and sshd -i. Each skips when its program is not
// installed, unless SUPERD_REQUIRE_PROGRAMS=1 (set by .ci/run, which
// installs them) turns the skip into a failure.

// realProgram skips the test, or fails it under SUPERD_REQUIRE_PROGRAMS=1,
// unless path is an installed executable and superd runs as root (every
// test here switches users or needs root for the program itself). Under
// go test -short it skips whatever SUPERD_REQUIRE_PROGRAMS says.
func realProgram(t *testing.T, path, pkg string) {
	t.Helper()
	skipIfShort(t, "a real inetd program ("+path+")")
	var why string
	if _, err := exec.LookPath(path); err != nil {
		why = fmt.Sprintf("%s not installed (apt-get install %s; .ci/run installs it)", path, pkg)
	} else if os.Geteuid() != 0 {
		why = fmt.Sprintf("%s under superd needs root (user switching); CI runs as root", path)
	}
	if why == "" {
		return
	}
	if os.Getenv("SUPERD_REQUIRE_PROGRAMS") == "1" {
		t.Fatalf("%s, and SUPERD_REQUIRE_PROGRAMS=1 requires it", why)
	}
	t.Skip(why)
}

// sharedDir returns a fresh temporary folder that the handler user
// nobody can read: t.TempDir creates it and its parent with mode 0700.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runProgram runs a client program with a deadline and returns its
// standard output, failing the test (with stderr) when it fails.
func runProgram(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// writeRandom writes n random bytes to path, world-readable, and
// returns them.
func writeRandom(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealGitDaemon serves a bare repository with git daemon --inetd as
// nobody and clones it with git clone git://.
//
// The repository belongs to root (whoever ran the test) and the daemon
// runs as nobody; git refuses to serve a repository owned by another user
// ("fatal: detected dubious ownership", enforced in upload-pack since the
// 2024 security releases, which Debian 12's git 2.39.5 has). That check
// protects a user from the hooks and configuration of somebody else's
// repository; a read-only git daemon serving the administrator's
// repositories is exactly the case to allow, so the service passes
// -c safe.directory=* (command-line configuration, which git honours for
// this key and which reaches the upload-pack that git daemon runs through
// GIT_CONFIG_PARAMETERS). Running the daemon as root instead would avoid
// the check only by giving a network service root's rights.
func TestRealGitDaemon(t *testing.T) {
	t.Parallel()
	realProgram(t, "/usr/bin/git", "git")
	base := sharedDir(t)
	work := t.TempDir()
	// Keep the test's git away from the machine's and the user's config.
	gitEnv := []string{"HOME=" + work, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	repo := filepath.Join(base, "repo.git")
	wt := filepath.Join(work, "wt")
	runProgram(t, gitEnv, "git", "init", "-q", "--bare", repo)
	runProgram(t, gitEnv, "git", "init", "-q", wt)
	runProgram(t, gitEnv, "git", "-C", wt, "-c", "user.name=superd", "-c", "user.email=superd@localhost",
		"commit", "-q", "--allow-empty", "-m", "served by superd")
	runProgram(t, gitEnv, "git", "-C", wt, "push", "-q", repo, "HEAD:refs/heads/main")
	runProgram(t, gitEnv, "git", "--git-dir="+repo, "symbolic-ref", "HEAD", "refs/heads/main")
	want := strings.TrimSpace(runProgram(t, gitEnv, "git", "-C", wt, "rev-parse", "HEAD"))

	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.git]
port = %d
address = "127.0.0.1"
user = "nobody"
path = "/usr/bin/git"
args = ["-c", "safe.directory=*", "daemon", "--inetd", "--verbose", "--log-destination=stderr",
        "--export-all", "--base-path=%[2]s", "%[2]s"]
`, port, base))

	clone := filepath.Join(work, "clone")
	runProgram(t, gitEnv, "git", "clone", "-q", fmt.Sprintf("git://127.0.0.1:%d/repo.git", port), clone)
	if got := strings.TrimSpace(runProgram(t, gitEnv, "git", "-C", clone, "rev-parse", "HEAD")); got != want {
		t.Errorf("cloned HEAD = %s, want %s", got, want)
	}
	// git daemon --inetd names the client from REMOTE_ADDR/REMOTE_PORT.
	m := d.waitLog(`service=git event=stderr pid=(\d+) line="\[\d+\] Connection from 127\.0\.0\.1:(\d+)"`)
	d.waitLog(fmt.Sprintf(`service=git event=exit pid=%s remote=127\.0\.0\.1:%s status=0 `, m[1], m[2]))
}

// TestRealTFTPWait serves files with tftpd-hpa's in.tftpd in wait mode:
// it reads requests from the bound socket superd hands it (and switches
// that socket to non-blocking mode), forks a child per transfer, and
// exits after --timeout seconds without a new request; superd then
// watches the socket again.
func TestRealTFTPWait(t *testing.T) {
	t.Parallel()
	realProgram(t, "/usr/sbin/in.tftpd", "tftpd-hpa")
	dir := sharedDir(t)
	// 5000 bytes: nine full 512-byte blocks and a short tenth one.
	want := writeRandom(t, filepath.Join(dir, "boot.bin"), 5000)
	port := testkit.FreePort(t, "udp")
	d := startDaemon(t, fmt.Sprintf(`
[services.tftp]
port = %d
protocol = "udp"
address = "127.0.0.1"
wait = true
user = "root"
path = "/usr/sbin/in.tftpd"
args = ["--timeout", "1", "--secure", %q]
`, port, dir))
	exitRE := `service=tftp event=exit pid=\d+ status=0 `

	// Twice in a row, each time after the last handler exited: superd
	// resumed watching the socket, now left non-blocking by in.tftpd.
	for i := 1; i <= 2; i++ {
		got, err := tftpGet(port, "boot.bin")
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("fetch %d: got %d bytes, not the file's %d", i, len(got), len(want))
		}
		testkit.WaitFor(t, fmt.Sprintf("in.tftpd exit %d logged", i), func() bool {
			return d.countLog(exitRE) == i
		})
	}
	if n := d.countLog(`service=tftp event=start `); n != 2 {
		t.Fatalf("%d handler starts logged, want 2 (one per idle period)", n)
	}

	// Two requests sent together: neither is lost, whether one in.tftpd
	// takes both or the second stays queued for the next one.
	type result struct {
		b   []byte
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			b, err := tftpGet(port, "boot.bin")
			results <- result{b, err}
		}()
	}
	for range 2 {
		r := <-results // tftpGet gives up on its own within its deadline
		if r.err != nil {
			t.Fatalf("concurrent fetch: %v", r.err)
		}
		if !bytes.Equal(r.b, want) {
			t.Fatalf("concurrent fetch: got %d bytes, not the file's %d", len(r.b), len(want))
		}
	}
	testkit.WaitFor(t, "the last in.tftpd's exit logged", func() bool {
		return d.countLog(`service=tftp event=start `) == d.countLog(exitRE)
	})
}

// TFTP (RFC 1350) opcodes.
const (
	tftpRRQ   = 1
	tftpDATA  = 3
	tftpACK   = 4
	tftpERROR = 5
)

// tftpGet fetches name in octet mode from the TFTP server on the
// loopback port, acknowledging each block to the port the transfer
// comes from (the server's transfer ID). It gives up after 10 seconds.
func tftpGet(port int, name string) ([]byte, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rrq := binary.BigEndian.AppendUint16(nil, tftpRRQ)
	rrq = append(append(append(rrq, name...), 0), "octet\x00"...)
	if _, err := c.WriteToUDP(rrq, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		return nil, err
	}
	var (
		file []byte
		tid  *net.UDPAddr
		next = uint16(1)
		buf  = make([]byte, 4+512+1)
	)
	for range 10_000 { // bounded: far more blocks than any test file has
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return nil, fmt.Errorf("tftp: waiting for block %d: %w", next, err)
		}
		if !from.IP.IsLoopback() {
			return nil, fmt.Errorf("tftp: packet from %v", from)
		}
		if tid == nil {
			tid = from
		} else if from.Port != tid.Port {
			continue // RFC 1350: not this transfer's ID; ignore
		}
		if n < 4 {
			return nil, fmt.Errorf("tftp: short packet %q", buf[:n])
		}
		op, block := binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:])
		switch {
		case op == tftpERROR:
			return nil, fmt.Errorf("tftp: server error %d: %s", block, bytes.TrimRight(buf[4:n], "\x00"))
		case op != tftpDATA:
			return nil, fmt.Errorf("tftp: unexpected opcode %d", op)
		case block == next-1:
			// A retransmission: our ACK was late or lost; ACK it again.
		case block == next:
			file = append(file, buf[4:n]...)
			next++
		default:
			return nil, fmt.Errorf("tftp: got block %d, want %d", block, next)
		}
		ack := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tftpACK), block)
		if _, err := c.WriteToUDP(ack, tid); err != nil {
			return nil, err
		}
		if block == next-1 && n-4 < 512 {
			return file, nil
		}
	}
	return nil, errors.New("tftp: too many packets")
}

// TestRealBusyboxHttpd serves a folder with busybox httpd -i as nobody.
func TestRealBusyboxHttpd(t *testing.T) {
	t.Parallel()
	realProgram(t, "/bin/busybox", "busybox")
	dir := sharedDir(t)
	const page = "<h1>served by busybox httpd under superd</h1>\n"
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.httpd]
port = %d
address = "127.0.0.1"
user = "nobody"
path = "/bin/busybox"
args = ["httpd", "-i", "-vv", "-h", %q]
`, port, dir))

	// Remember the client's address: httpd -vv logs the peer it finds
	// with getpeername on fd 0.
	locals := make(chan string, 4)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err == nil {
					locals <- c.LocalAddr().String()
				}
				return c, err
			},
		},
	}
	defer client.CloseIdleConnections()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: reading the body: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/index.html"); code != http.StatusOK || body != page {
		t.Errorf("GET /index.html = %d %q, want 200 %q", code, body, page)
	}
	local := <-locals
	d.waitLog(`service=httpd event=stderr pid=\d+ line="` + regexp.QuoteMeta(local) + `: url:/index\.html"`)
	d.waitLog(`service=httpd event=exit pid=\d+ remote=` + regexp.QuoteMeta(local) + ` status=0 `)
	if code, _ := get("/missing.html"); code != http.StatusNotFound {
		t.Errorf("GET /missing.html = %d, want 404", code)
	}
}

// TestRealRsyncDaemon serves a module with rsync --daemon: with a socket
// on fd 0, rsync runs as an inetd daemon and switches to the module's
// uid/gid itself, so superd starts it as root. rsync points its stderr at
// /dev/null in that mode; it logs to the "log file" of rsyncd.conf.
func TestRealRsyncDaemon(t *testing.T) {
	t.Parallel()
	realProgram(t, "/usr/bin/rsync", "rsync")
	dir := sharedDir(t)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	want := writeRandom(t, filepath.Join(data, "big.bin"), 100_000)
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "rsyncd.conf")
	logFile := filepath.Join(dir, "rsyncd.log")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`use chroot = no
uid = nobody
gid = nogroup
log file = %s

[files]
path = %s
comment = superd test module
read only = yes
`, logFile, data)), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.rsync]
port = %d
address = "127.0.0.1"
user = "root"
path = "/usr/bin/rsync"
args = ["--daemon", "--config=%s"]
`, port, conf))

	url := fmt.Sprintf("rsync://127.0.0.1:%d/", port)
	if got := runProgram(t, nil, "rsync", url); !regexp.MustCompile(`(?m)^files\s+superd test module$`).MatchString(got) {
		t.Errorf("module list:\n%s\nwant the module files", got)
	}
	got := runProgram(t, nil, "rsync", url+"files/")
	for _, name := range []string{"big.bin", "hello.txt"} {
		if !regexp.MustCompile(`(?m) ` + regexp.QuoteMeta(name) + `$`).MatchString(got) {
			t.Errorf("listing of files/:\n%s\nwant %s", got, name)
		}
	}
	dest := t.TempDir()
	runProgram(t, nil, "rsync", "-a", url+"files/big.bin", dest+"/")
	if b, err := os.ReadFile(filepath.Join(dest, "big.bin")); err != nil || !bytes.Equal(b, want) {
		t.Errorf("copied big.bin: %d bytes, %v; want the %d bytes served", len(b), err, len(want))
	}
	testkit.WaitFor(t, "three rsync exits logged", func() bool {
		return d.countLog(`service=rsync event=exit `) == 3
	})
	if n := d.countLog(`service=rsync event=exit .* status=0 `); n < 2 {
		t.Errorf("%d transfers exited 0, want 2 (listing a module and copying)", n)
	}
	// rsync found the client's address on its socket (getpeername).
	b, _ := os.ReadFile(logFile)
	if !regexp.MustCompile(`rsync on files/big\.bin from \S+ \(127\.0\.0\.1\)`).Match(b) {
		t.Errorf("rsyncd.log does not record the copy from 127.0.0.1:\n%s", b)
	}
}

// TestRealSshd runs sshd -i, which speaks SSH on fd 0/1 and logs to
// stderr with -e, and logs in with a generated key. sshd needs its
// privilege separation folder /run/sshd, which openssh-server's init
// scripts create at boot: the test creates it when it is missing.
func TestRealSshd(t *testing.T) {
	t.Parallel()
	realProgram(t, "/usr/sbin/sshd", "openssh-server")
	realProgram(t, "/usr/bin/ssh", "openssh-client")
	realProgram(t, "/usr/bin/ssh-keygen", "openssh-client")
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519_key")
	clientKey := filepath.Join(dir, "client_ed25519_key")
	runProgram(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "superd-test-host", "-f", hostKey)
	runProgram(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "superd-test-client", "-f", clientKey)
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
`, hostKey, authorized)), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t, "tcp")
	d := startDaemon(t, fmt.Sprintf(`
[services.ssh]
port = %d
address = "127.0.0.1"
user = "root"
path = "/usr/sbin/sshd"
args = ["-i", "-e", "-f", %q]
`, port, conf))

	// The banner alone: sshd wrote to the socket on fd 1.
	c := dial(t, port)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, 64)
	n, err := io.ReadAtLeast(c, banner, len("SSH-2.0-OpenSSH"))
	c.Close()
	if err != nil || !strings.HasPrefix(string(banner[:n]), "SSH-2.0-OpenSSH") {
		t.Fatalf("banner = %q, %v; want SSH-2.0-OpenSSH...", banner[:n], err)
	}

	out := runProgram(t, nil, "ssh", "-F", "/dev/null", "-i", clientKey, "-p", strconv.Itoa(port),
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
		"root@127.0.0.1", "echo", "superd-ssh-ok")
	if !strings.HasSuffix(strings.TrimSpace(out), "superd-ssh-ok") {
		t.Errorf("ssh echo printed %q, want superd-ssh-ok", out)
	}
	m := d.waitLog(`service=ssh event=stderr pid=(\d+) line="Accepted publickey for root from 127\.0\.0\.1 port (\d+) `)
	d.waitLog(fmt.Sprintf(`service=ssh event=exit pid=%s remote=127\.0\.0\.1:%s `, m[1], m[2]))
}
