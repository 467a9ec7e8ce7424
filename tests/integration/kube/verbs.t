#!/usr/bin/env bash
# Every verb and error path of lib/kube against the real apiserver.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
exec "$itest" verbs
