#!/usr/bin/env bash
# Adds up every "test result:" line that cargo printed into one closing line,
# so that a run reads as one total however many test binaries it had.
set -euo pipefail
log=${1:?usage: test-summary.sh LOG}
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed;?$/)  passed  += $i
         if ($(i+1) ~ /^failed;?$/)  failed  += $i
         if ($(i+1) ~ /^ignored;?$/) ignored += $i
       }
     }
     END {
       if (passed + failed == 0) { print "no tests ran" > "/dev/stderr"; exit 1 }
       printf "%d passed, %d failed, %d skipped\n", passed, failed, ignored
       exit failed > 0
     }' "$log"
