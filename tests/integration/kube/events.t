#!/usr/bin/env bash
# The event recorder creates core/v1 Events and de-duplicates repeats (count).
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
exec "$itest" events
