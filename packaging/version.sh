#!/bin/sh
# Prints superd's version as make stamps it into the binary and the
# packages: one string, valid as a Debian and as an RPM version (digits
# first; only letters, digits and . + ~), so `superd version`, `dpkg -l`
# and `rpm -q` agree.
#
#   git describe --tags --always --dirty   printed
#   v1.2.3                                 1.2.3
#   v1.2.3-dirty                           1.2.3+dirty
#   v1.2.3-4-gabc1234                      1.2.3+git4.abc1234     (after the tag: sorts above 1.2.3)
#   v1.2.0-rc1                             1.2.0~rc1              (pre-release: sorts below 1.2.0)
#   abc1234-dirty (no tag yet)             BASE~git57.abc1234.dirty (57 commits; below BASE)
#   no git, or not a checkout              BASE
#
# BASE is the first line of the file VERSION at the repository root, or
# 0.1.0. Run from anywhere; it looks at the repository it lives in.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
base=0.1.0
if [ -r "$root/VERSION" ]; then
	base=$(sed -n '1{s/^v//;s/[[:space:]]//g;p;}' "$root/VERSION")
fi

# git describe --tags fails when no version tag (v1.2.3 or 1.2.3) is
# reachable; --always then gives the bare abbreviated commit (which may
# start with a digit too, so the two cases are told apart here).
kind=tag
desc=$(git -C "$root" describe --tags --match 'v[0-9]*' --match '[0-9]*' --dirty 2>/dev/null) ||
	{ kind=commit; desc=$(git -C "$root" describe --always --dirty 2>/dev/null); } ||
	{ kind=none; desc=; }
dirty=
case $desc in *-dirty) dirty=1 desc=${desc%-dirty} ;; esac

case $kind in
none)
	version=$base
	;;
tag)
	# A tag, maybe followed by -N-gSHA (commits since the tag).
	tag=$desc extra=
	if printf '%s\n' "$desc" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
		sha=${desc##*-g}
		rest=${desc%-g*}
		count=${rest##*-}
		tag=${rest%-*}
		extra=git$count.$sha
	fi
	tag=$(printf '%s' "${tag#v}" | tr -- '-_' '~~')
	version=$tag
	[ -z "$extra" ] || version=$version+$extra
	if [ -n "$dirty" ]; then
		case $version in *+*) version=$version.dirty ;; *) version=$version+dirty ;; esac
	fi
	;;
commit)
	# No tag yet: a bare abbreviated commit.
	count=$(git -C "$root" rev-list --count HEAD 2>/dev/null) || count=0
	version=$base~git$count.$desc
	[ -z "$dirty" ] || version=$version.dirty
	;;
esac

if ! printf '%s\n' "$version" | grep -Eq '^[0-9][A-Za-z0-9.+~]*$'; then
	echo "packaging/version.sh: cannot make a package version of \"$version\" (from git describe \"$desc\")" >&2
	exit 1
fi
printf '%s\n' "$version"
