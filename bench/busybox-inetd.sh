#!/usr/bin/env bash
# busybox-inetd.sh CACHE_DIR: prints the path of a busybox binary that has
# the inetd applet and nothing else, building it first when CACHE_DIR holds
# none. Debian's own busybox lacks inetd, so this builds Debian's busybox
# source (apt-get source busybox: the archive's signed index vouches for
# the files, Debian's patches applied) with `make allnoconfig` plus
# CONFIG_INETD=y: no built-in services, no pidfile, syslog logging only.
#
# apt-get source needs a deb-src entry. When there is none, this adds one
# for the system's release in /etc/apt/sources.list.d/superd-bench-src.sources
# (a file of its own, said so on stderr, left in place for later runs) and
# runs apt-get update. Needs root for that, dpkg-source (dpkg-dev), make,
# gcc, bzip2 and xz-utils; bench/bench.sh installs what is missing.
#
# Exit status 0 with the path on stdout; 1 with the reason on stderr.
set -euo pipefail

CACHE=${1:?usage: busybox-inetd.sh CACHE_DIR}
# The whole build recipe: a cached binary is reused only if it was built
# with this one.
RECIPE="allnoconfig + CONFIG_INETD=y (recipe 1)"
BIN=$CACHE/busybox-inetd
STAMP=$CACHE/busybox-inetd.stamp
SRCLIST=/etc/apt/sources.list.d/superd-bench-src.sources

say() { echo "busybox-inetd.sh: $*" >&2; }

if [[ -x $BIN && -f $STAMP && $(sed -n 2p "$STAMP") == "$RECIPE" ]]; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/busybox-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# fetch downloads the source package into $WORK; false if apt cannot.
fetch() {
	(cd "$WORK" && apt-get source --download-only busybox) >"$WORK/apt.log" 2>&1
}
if ! fetch; then
	if [[ -e $SRCLIST ]]; then
		say "apt-get source busybox failed although $SRCLIST exists:"
		sed 's/^/  /' "$WORK/apt.log" >&2
		exit 1
	fi
	# shellcheck source=/dev/null
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || { say "no VERSION_CODENAME in /etc/os-release: cannot name a deb-src suite"; exit 1; }
	say "no deb-src entry for busybox: adding $SRCLIST (deb-src $codename main, deb.debian.org) and running apt-get update"
	{
		echo "# Added by superd's bench/busybox-inetd.sh: Debian source packages,"
		echo "# to build busybox's inetd applet for the benchmark. Safe to remove."
		echo "Types: deb-src"
		echo "URIs: http://deb.debian.org/debian"
		echo "Suites: $codename"
		echo "Components: main"
		echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
	} >"$SRCLIST" || { say "cannot write $SRCLIST (not root?)"; exit 1; }
	apt-get update -qq >"$WORK/update.log" 2>&1 || { say "apt-get update failed:"; sed 's/^/  /' "$WORK/update.log" >&2; exit 1; }
	fetch || { say "apt-get source busybox failed:"; sed 's/^/  /' "$WORK/apt.log" >&2; exit 1; }
fi

dsc=$(ls "$WORK"/busybox_*.dsc)
version=$(sed -n 's/^Version: //p' "$dsc")
say "building busybox $version with only the inetd applet (once; cached in $CACHE)"
(cd "$WORK" && dpkg-source -x "$dsc" src) >"$WORK/extract.log" 2>&1 ||
	{ say "dpkg-source -x failed:"; sed 's/^/  /' "$WORK/extract.log" >&2; exit 1; }
cd "$WORK/src"
{
	make allnoconfig
	sed -i 's/^# CONFIG_INETD is not set$/CONFIG_INETD=y/' .config
	# oldconfig asks about the options CONFIG_INETD brings; the empty
	# answers take their defaults (every built-in service off). Fed by
	# process substitution: yes dies of SIGPIPE, which must not count.
	make oldconfig < <(yes '')
} >"$WORK/config.log" 2>&1 || { say "configuring failed:"; tail -20 "$WORK/config.log" >&2; exit 1; }
grep -qx 'CONFIG_INETD=y' .config || { say "CONFIG_INETD=y did not stick in .config"; exit 1; }
make -j"$(nproc)" busybox >"$WORK/build.log" 2>&1 || { say "make failed:"; tail -30 "$WORK/build.log" >&2; exit 1; }
# An invalid option makes the applet fail in getopt, before it could
# read /etc/inetd.conf or daemonize; a missing applet says so instead.
if ./busybox inetd -Z 2>&1 | grep -q 'applet not found'; then
	say "the built busybox has no inetd applet"
	exit 1
fi
install -m 755 busybox "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
printf '%s\n%s\n' "$version" "$RECIPE" >"$STAMP"
echo "$BIN"
