#!/usr/bin/env bash
# Informer under 10,000 rapid updates ends equal to a fresh LIST; indexes, deletes.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
exec "$itest" informer "${KMM_KUBE_INFORMER_UPDATES:-10000}"
