#!/usr/bin/env bash
# Watch events in order, cancellation from another thread, server timeout,
# watches and requests from many threads sharing one connection.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
exec "$itest" watch
