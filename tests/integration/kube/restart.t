#!/usr/bin/env bash
# An informer's watch survives a restart of the shared kube-apiserver (it is
# healthy again when this test ends).
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
: "${KMM_TESTENV_DIR:?KMM_TESTENV_DIR unset}"
exec "$itest" disrupt "bash $(dirname "$0")/lib.sh restart_apiserver $KMM_TESTENV_DIR"
