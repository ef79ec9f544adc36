#!/bin/sh
# The entrypoint contract of docker.io/library/redis.
set -e

# First argument an option (`--port 6380`) or a configuration file
# (`/etc/redis.conf`): run redis-server with them.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

# Started as root (docker run --user 0): own /data, then drop to redis.
if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --clear-groups -- "$0" "$@"
fi

# Files Redis writes are private unless a umask was chosen.
if [ "$(umask)" = '0022' ]; then
	umask 0077
fi

exec "$@"
