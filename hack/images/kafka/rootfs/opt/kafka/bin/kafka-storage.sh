#!/bin/bash
# kafka-storage.sh of the Tessera Kafka image: format, info, random-uuid.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
