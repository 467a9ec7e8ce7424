#!/usr/bin/env bash
# A 410 forced by etcd compaction makes the informer relist. The shared
# apiserver serves watches from its watch cache (no 410 after an etcd
# compaction), so this test brings up its own control plane with
# --watch-cache=false and tears it down afterwards.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
dir=$(mktemp -d /tmp/kmm-kube-gone.XXXXXX)
cleanup() { KMM_TESTENV_DIR=$dir "$testenv" down >/dev/null 2>&1; rm -rf "$dir"; }
trap cleanup EXIT
if ! KMM_TESTENV_DIR=$dir KMM_TESTENV_APISERVER_ARGS="--watch-cache=false" "$testenv" up >"$dir.up.log" 2>&1; then
	echo "1..1"
	echo "not ok 1 - private control plane did not come up"
	sed 's/^/# /' "$dir.up.log" | tail -20
	rm -f "$dir.up.log"
	exit 1
fi
rm -f "$dir.up.log"
eval "$(KMM_TESTENV_DIR=$dir "$testenv" env)"
# Advance the revision elsewhere, wait for the informer's short watch stream
# to end, compact: the reconnect from the old version gets 410.
kc="$KMM_TESTENV_BIN/kubectl --kubeconfig $KUBECONFIG"
"$itest" gone "bash -c '$kc create namespace kube-gone-other >/dev/null && for i in 1 2 3 4 5; do $kc -n kube-gone-other create configmap c\$i >/dev/null; done && bash $(dirname "$0")/lib.sh compact_etcd $dir && sleep 4'"
