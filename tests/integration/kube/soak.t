#!/usr/bin/env bash
# Bounded soak (30 s, KMM_KUBE_SOAK_SECONDS): an informer reconnecting every
# second under continuous writes ends equal to a fresh LIST. Built with ASan,
# LeakSanitizer fails the run (non-zero exit, "not ok" below) on any leak.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
out=$("$itest" soak "${KMM_KUBE_SOAK_SECONDS:-30}" 2>"${TMPDIR:-/tmp}/kube-soak.$$.err")
rc=$?
echo "$out" | grep -v '^1\.\.'
n=$(echo "$out" | grep -cE '^(not )?ok ')
if [ "$rc" -ne 0 ] && ! echo "$out" | grep -q '^not ok'; then
	n=$((n + 1))
	echo "not ok $n - exit status $rc (leak or crash)"
	grep -E 'ERROR|SUMMARY|#[0-9] ' "${TMPDIR:-/tmp}/kube-soak.$$.err" | head -30 | sed 's/^/# /'
else
	n=$((n + 1))
	echo "ok $n - exit status 0: no leak reported"
fi
rm -f "${TMPDIR:-/tmp}/kube-soak.$$.err"
echo "1..$n"
