#!/usr/bin/env bash
# zkEnv.sh of the Tessera ZooKeeper image, sourced by zkServer.sh and
# zkCli.sh. Debian's own one pins every path to /etc/zookeeper and
# /var/log/zookeeper; this one keeps the environment contract of upstream's
# zkEnv.sh (as in docker.io/library/zookeeper): ZOOCFGDIR, ZOOCFG,
# ZOO_LOG_DIR, JAVA_HOME, JVMFLAGS, SERVER_JVMFLAGS, CLIENT_JVMFLAGS,
# ZK_SERVER_HEAP, ZK_CLIENT_HEAP, $ZOOCFGDIR/java.env and zookeeper-env.sh.

ZOOBINDIR="${ZOOBINDIR:-/usr/share/zookeeper/bin}"

if [ -z "$ZOOCFGDIR" ]; then
  ZOOCFGDIR=/conf
fi

if [ -f "${ZOOCFGDIR}/zookeeper-env.sh" ]; then
  . "${ZOOCFGDIR}/zookeeper-env.sh"
fi

if [ -z "$ZOOCFG" ]; then
  ZOOCFG="zoo.cfg"
fi
ZOOCFG="$ZOOCFGDIR/$ZOOCFG"

if [ -f "$ZOOCFGDIR/java.env" ]; then
  . "$ZOOCFGDIR/java.env"
fi

if [ -z "$ZOO_LOG_DIR" ]; then
  ZOO_LOG_DIR=/logs
fi

if [ -n "$JAVA_HOME" ] && [ -x "$JAVA_HOME/bin/java" ]; then
  JAVA="$JAVA_HOME/bin/java"
elif command -v java >/dev/null 2>&1; then
  JAVA=java
else
  echo "Error: JAVA_HOME is not set and java could not be found in PATH." 1>&2
  exit 1
fi

# The configuration folder first: its logback.xml (or log4j.properties)
# wins. /conf last, so that a ZOOCFGDIR without a logback.xml still logs
# as /conf/logback.xml says instead of logback's DEBUG default.
# zookeeper.jar names its other jars in its manifest.
CLASSPATH="$ZOOCFGDIR${CLASSPATH:+:$CLASSPATH}:/usr/share/java/zookeeper.jar:/usr/share/java/logback-classic.jar:/usr/share/java/logback-core.jar:/conf"

# Default heap of the server and of the CLI, as upstream.
ZK_SERVER_HEAP="${ZK_SERVER_HEAP:-1000}"
export SERVER_JVMFLAGS="-Xmx${ZK_SERVER_HEAP}m $SERVER_JVMFLAGS"

ZK_CLIENT_HEAP="${ZK_CLIENT_HEAP:-256}"
export CLIENT_JVMFLAGS="-Xmx${ZK_CLIENT_HEAP}m $CLIENT_JVMFLAGS"
