#!/bin/sh
# Greets the client by address, then echoes one line back.
# stdin/stdout are the TCP connection; superd sets TCPREMOTEIP and friends.
greeting=${1:-Hello}
printf '%s %s:%s, this is %s on port %s. Say something:\n' \
	"$greeting" "$TCPREMOTEIP" "$TCPREMOTEPORT" "$SUPERD_SERVICE" "$TCPLOCALPORT"
IFS= read -r line || exit 0
printf 'You said: %s\n' "$line"
echo "served $TCPREMOTEIP" >&2     # stderr goes to superd's log
