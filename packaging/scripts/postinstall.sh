#!/bin/sh
# superd postinstall (deb postinst: "configure" [old version]; rpm %post:
# 1 install, 2 upgrade). Tells systemd about the new or changed unit
# files. It enables and starts nothing: superd runs only once the admin
# says `systemctl enable --now superd`. A running superd keeps running
# the binary it started from until `systemctl restart superd`.
set -e
case "$1" in
configure | 1 | 2)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
exit 0
