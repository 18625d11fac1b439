/*
 * cspawn: the C floor of a process-per-connection superserver, for
 * bench/bench.sh. Usage: cspawn 127.x.y.z:PORT /path/to/handler [args...]
 *
 * Per connection it does only what any superserver must: accept,
 * posix_spawn the handler with the connection dup2'd to fds 0 and 1, close
 * its own copy; a SIGCHLD handler reaps with a waitpid(-1, WNOHANG) loop.
 * No checks, no logging, no limits: what a real superserver spends beyond
 * this floor is its own cost. It binds IPv4 loopback addresses only; the
 * listening socket and every accepted one are close-on-exec, so a handler
 * gets fds 0, 1 (the connection) and 2 (this program's stderr) alone.
 * SIGTERM ends it (default action).
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void reap(int sig)
{
	int saved = errno; /* waitpid may clobber it under accept's feet */
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = argc >= 3 ? strrchr(argv[1], ':') : NULL;
	if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof host) {
		fprintf(stderr, "usage: cspawn 127.x.y.z:PORT HANDLER [ARGS...]\n");
		return 2;
	}
	memcpy(host, argv[1], (size_t)(colon - argv[1]));
	host[colon - argv[1]] = '\0';
	sa.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127 || sa.sin_port == 0) {
		fprintf(stderr, "cspawn: %s: want an IPv4 loopback address and a port\n", argv[1]);
		return 2;
	}
	struct sigaction act = {.sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&act.sa_mask);
	sigaction(SIGCHLD, &act, NULL);

	int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) {
		fprintf(stderr, "cspawn: listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (c < 0) { /* no back-off in a floor: stop, so bench.sh sees it gone */
			perror("cspawn: accept4");
			return 1;
		}
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, c, 0); /* dup2 clears close-on-exec */
		posix_spawn_file_actions_adddup2(&fa, c, 1);
		pid_t pid;
		int err = posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ);
		if (err != 0)
			fprintf(stderr, "cspawn: posix_spawn %s: %s\n", argv[2], strerror(err));
		posix_spawn_file_actions_destroy(&fa);
		close(c);
	}
}
