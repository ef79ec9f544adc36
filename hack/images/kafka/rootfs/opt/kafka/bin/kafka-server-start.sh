#!/bin/bash
# kafka-server-start.sh of the Tessera Kafka image: the broker in the
# foreground, as the distribution's script runs it without -daemon.
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*" >&2
  exit 1
fi
base_dir=$(dirname "$0")
if [ -z "$KAFKA_LOG4J_OPTS" ]; then
  export KAFKA_LOG4J_OPTS="-Dlog4j.configuration=file:$base_dir/../config/log4j.properties"
fi
if [ -z "$KAFKA_HEAP_OPTS" ]; then
  export KAFKA_HEAP_OPTS="-Xmx1G -Xms1G"
fi
if [ "$1" = -daemon ]; then
  shift
fi
exec "$base_dir/kafka-run-class.sh" -name kafkaServer kafka.Kafka "$@"
