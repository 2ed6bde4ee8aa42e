#!/bin/sh
# Stands in for ssh in tests of calypso-run --hosts: `fake_rsh.sh HOST WORDS...` runs the
# words joined by spaces through sh, as ssh has the remote user's shell run them, inside
# network namespace HOST if there is one of that name, else on this host. HOST
# "unreachable" fails as ssh does when it cannot connect (status 255).
host=$1
shift
if [ "$host" = unreachable ]; then
  echo "ssh: connect to host unreachable port 22: No route to host" >&2
  exit 255
fi
if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$host"; then
  exec ip netns exec "$host" sh -c "$*"
fi
exec sh -c "$*"
