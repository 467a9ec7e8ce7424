#!/usr/bin/env bash
# Watch events in order, cancellation from another thread, server timeout.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
exec "$itest" watch
