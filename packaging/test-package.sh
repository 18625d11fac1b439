#!/usr/bin/env bash
# End-to-end test of superd's packages, as a sysadmin meets them. Run as
# root on Debian (CI runs it from .ci/run); it installs and purges the
# package on this machine, so it refuses to run where superd is already
# installed or /etc/superd exists.
#
#  1. make package: dist/superd_<version>_<arch>.deb and the .rpm
#  2. the .deb's file list (dpkg-deb -c) against packaging/testdata/deb-files.txt,
#     its control fields and conffiles; the .rpm's (rpm -qlp) if rpm is here
#  3. dpkg -i: nothing runs the installed superd; superd check on the
#     installed configuration; systemd-analyze verify of the installed
#     unit (no output at all); both man pages render without warnings;
#     superd version; a reinstall keeps an edited conffile
#  4. dpkg --purge: no file of the package, nothing under /etc/superd
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
step() { echo "-- $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (it installs and purges the package)"
command -v dpkg >/dev/null || fail "needs Debian's dpkg"
if dpkg-query -W -f='${Status}' superd 2>/dev/null | grep -q 'installed\|config-files'; then
	fail "superd is already installed here; this test would purge it: refusing"
fi
[ ! -e /etc/superd ] || fail "/etc/superd exists; this test would remove it: refusing"

# Leave the machine as it was, whatever happens below.
installed=
cleanup() {
	if [ -n "$installed" ]; then
		dpkg --purge superd >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

step "make package"
make package >/tmp/superd-make-package.log 2>&1 || { cat /tmp/superd-make-package.log; fail "make package"; }
version=$(sh packaging/version.sh)
debarch=$(dpkg --print-architecture)
deb=dist/superd_${version}_${debarch}.deb
[ -f "$deb" ] || { ls -l dist; fail "no $deb"; }
rpms=(dist/superd-"${version}"-1.*.rpm)
[ -f "${rpms[0]}" ] || { ls -l dist; fail "no dist/superd-${version}-1.<arch>.rpm"; }
echo "   $deb"
echo "   ${rpms[0]}"

# Paths as dpkg lists them: ./usr/sbin/superd -> /usr/sbin/superd.
files_of_deb() { dpkg-deb -c "$1" | awk '{print $6}' | sed -e 's|^\./|/|' -e 's|/$||' | grep -v '^$' | sort; }

step "deb file list (packaging/testdata/deb-files.txt)"
diff -u packaging/testdata/deb-files.txt <(files_of_deb "$deb") || fail "the .deb's files differ from packaging/testdata/deb-files.txt (- expected, + in the package)"

step "deb control fields"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = superd ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), want $version"
dpkg --compare-versions "$version" gt 0 || fail "Version $version is not a valid Debian version"
[ "$(field Architecture)" = "$debarch" ] || fail "Architecture: $(field Architecture), want $debarch"
field Maintainer | grep -Eq '^[^<>]+ <[^@<> ]+@[^<> ]+>$' || fail "Maintainer: '$(field Maintainer)' is not 'Name <address>'"
[ -n "$(field Description | head -1)" ] || fail "Description has no synopsis line"
[ "$(field Description | wc -l)" -ge 2 ] || fail "Description has no long description"
[ "$(field Depends)" = "libc6 (>= 2.34)" ] || fail "Depends: '$(field Depends)', want 'libc6 (>= 2.34)'"
ctl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctl/DEBIAN"
[ "$(cat "$ctl/DEBIAN/conffiles")" = /etc/superd/services.toml ] || fail "conffiles: $(cat "$ctl/DEBIAN/conffiles")"
for s in postinst prerm postrm; do [ -x "$ctl/DEBIAN/$s" ] || fail "no executable $s"; done
rm -rf "$ctl"

if command -v rpm >/dev/null; then
	step "rpm file list, header and config files"
	rpm=${rpms[0]}
	# rpm lists the package's own folders but not shared ones like /usr.
	diff -u <(grep -E '^/(etc/superd|usr/sbin/|usr/lib/systemd/system/|usr/share/man/man./|usr/share/doc/superd)' packaging/testdata/deb-files.txt) \
		<(rpm -qlp "$rpm" 2>/dev/null | sort) || fail "the .rpm's files differ from the .deb's"
	[ "$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE}' "$rpm" 2>/dev/null)" = "superd $version 1" ] ||
		fail "rpm header: $(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE}' "$rpm" 2>/dev/null)"
	[ "$(rpm -qcp "$rpm" 2>/dev/null)" = /etc/superd/services.toml ] || fail "rpm config files: $(rpm -qcp "$rpm" 2>/dev/null)"
	rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null | grep -qx 'cn /etc/superd/services.toml' ||
		fail "/etc/superd/services.toml is not %config(noreplace) in the .rpm"
else
	step "rpm: not installed here (apt-get install rpm); skipping the .rpm checks"
fi

step "dpkg -i"
installed=1
dpkg -i "$deb" >/tmp/superd-dpkg.log 2>&1 || { cat /tmp/superd-dpkg.log; fail "dpkg -i"; }
[ "$(dpkg-query -W -f='${Status}' superd)" = "install ok installed" ] || fail "dpkg-query: $(dpkg-query -W -f='${Status}' superd)"
# The postinst starts nothing (and the shipped configuration would
# listen on nothing): no process runs the installed binary. (Comparing
# ss output before and after would catch tests of other checkouts that
# listen on loopback meanwhile.)
for exe in /proc/[0-9]*/exe; do
	[ "$(readlink "$exe" 2>/dev/null)" != /usr/sbin/superd ] || fail "${exe%/exe} runs /usr/sbin/superd after dpkg -i"
done

step "superd check --config /etc/superd/services.toml"
/usr/sbin/superd check --config /etc/superd/services.toml || fail "superd check on the installed configuration"

step "systemd-analyze verify /usr/lib/systemd/system/superd.service"
# verify also loads superd.socket (the service's socket by name) and runs
# man for Documentation=; all of it must pass with nothing said.
out=$(systemd-analyze verify /usr/lib/systemd/system/superd.service /usr/lib/systemd/system/superd.socket 2>&1) ||
	{ echo "$out"; fail "systemd-analyze verify failed"; }
[ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify is not clean"; }
# verify (systemd 252) looks only at the first command of each Exec*=
# list; the reload's second one (kill -HUP) must exist too.
grep -E '^Exec[A-Za-z]+=' /usr/lib/systemd/system/superd.service | sed -E 's/^[^=]+=[-@:+!]*//; s/ .*//' |
	while read -r exe; do [ -x "$exe" ] || fail "superd.service runs $exe, which is not executable here"; done

step "man pages"
for page in /usr/share/man/man8/superd.8.gz /usr/share/man/man5/superd.toml.5.gz; do
	warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $page"
	[ -z "$warn" ] || { echo "$warn"; fail "man warns about $page"; }
done
[ "$(man -w superd)" = /usr/share/man/man8/superd.8.gz ] || fail "man superd finds $(man -w superd)"
[ "$(man -w 5 superd.toml)" = /usr/share/man/man5/superd.toml.5.gz ] || fail "man 5 superd.toml finds $(man -w 5 superd.toml)"

step "superd version"
v=$(/usr/sbin/superd version)
echo "   $v"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ "$v" = "superd $version (commit $commit, $(go env GOVERSION))" ] || fail "superd version printed '$v'"

step "reinstall keeps an edited conffile"
echo '# edited by the admin' >>/etc/superd/services.toml
dpkg -i "$deb" >/tmp/superd-dpkg.log 2>&1 || { cat /tmp/superd-dpkg.log; fail "dpkg -i (again)"; }
tail -1 /etc/superd/services.toml | grep -qx '# edited by the admin' || fail "dpkg -i replaced the edited /etc/superd/services.toml"

step "dpkg --purge superd"
dpkg --purge superd >/tmp/superd-dpkg.log 2>&1 || { cat /tmp/superd-dpkg.log; fail "dpkg --purge"; }
installed=
dpkg-query -W superd >/dev/null 2>&1 && fail "dpkg still knows superd after --purge"
left=
while read -r path; do
	# Shared folders (/usr, /usr/share/man/man8, …) stay; everything
	# else the package brought must be gone.
	case $path in
	/etc | /usr | /usr/lib | /usr/lib/systemd | /usr/lib/systemd/system | /usr/sbin | /usr/share | /usr/share/doc | /usr/share/man | /usr/share/man/man?) continue ;;
	esac
	[ ! -e "$path" ] && [ ! -L "$path" ] || left="$left $path"
done <packaging/testdata/deb-files.txt
[ -z "$left" ] || fail "left after purge:$left"
[ ! -e /etc/superd ] || { find /etc/superd; fail "/etc/superd is left after purge"; }

echo "test-package: OK: $(basename "$deb") and $(basename "${rpms[0]}") built, checked, installed, verified and purged"
