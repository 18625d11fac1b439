#!/bin/sh
# superd preremove (deb prerm: "remove", "upgrade" …; rpm %preun: 0 erase,
# 1 upgrade). On removal, not on upgrade, stop superd and its example
# socket and remove their enablement links, while the unit files still
# exist: nothing should run from a package that is gone.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop superd.service superd.socket || true
	fi
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable superd.service superd.socket >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
