#!/bin/sh
# The entrypoint contract of docker.io/library/memcached.
set -e

# First argument an option (`-m 64`): run memcached with them.
if [ "${1#-}" != "$1" ]; then
	set -- memcached "$@"
fi

exec "$@"
