/*
 * handler: the benchmark's trivial connection handler. It reads one line
 * from standard input (the connection), writes it back to standard output
 * (the same connection) and exits. Built with gcc -static -O2 so that no
 * dynamic loader or locale work blurs what the superserver costs: every
 * target in bench/bench.sh that starts a process starts this one.
 *
 * A line longer than the buffer is cut at the buffer's size; EOF before a
 * newline echoes what came. Exit status 0 on success, 1 on a read or write
 * error.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	char buf[4096];
	size_t got = 0;

	while (got < sizeof buf) {
		ssize_t n = read(0, buf + got, sizeof buf - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 1;
		if (n == 0)
			break;
		got += (size_t)n;
		if (memchr(buf + got - n, '\n', (size_t)n) != NULL)
			break;
	}
	for (size_t off = 0; off < got;) {
		ssize_t n = write(1, buf + off, got - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 1;
		off += (size_t)n;
	}
	return 0;
}
