#!/bin/sh
# superd postremove (deb postrm: "remove", "purge", "upgrade" …; rpm
# %postun: 0 erase, 1 upgrade). Tells systemd the unit files are gone.
# On purge (deb) dpkg has already deleted the conffile
# /etc/superd/services.toml; /etc/superd/services.d and /etc/superd
# go too, but only if empty: service files an admin put there stay.
set -e
case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
case "$1" in
purge | 0)
	rmdir /etc/superd/services.d 2>/dev/null || true
	rmdir /etc/superd 2>/dev/null || true
	;;
esac
exit 0
