#!/usr/bin/env bash
# Two processes elect one leader on a Lease; after SIGKILL of the leader the
# other takes over within the lease duration (+ one retry period of polling);
# after SIGTERM (clean stop) the lease is released and taken over at once.
set -u
. "$(dirname "$0")/lib.sh"
need_cluster
leader_bin=${KMM_BUILD_DIR:-}/tests/unit/kube/kube-leader
if [ ! -x "$leader_bin" ]; then echo "1..1"; echo "not ok 1 - $leader_bin not built"; exit 1; fi
kc="$KMM_TESTENV_BIN/kubectl --kubeconfig $KUBECONFIG"
# Defaults are 15 s / 10 s / 2 s; the test uses 6 s / 4 s / 1 s to stay short.
LEASE=6000 RENEW=4000 RETRY=1000
ns=kube-leader-$$
lease=kmm-test
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	$kc delete namespace "$ns" --wait=false >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
$kc create namespace "$ns" >/dev/null
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
now_ms() { date +%s%3N; }
start() { "$leader_bin" "$ns" "$lease" "$1" $LEASE $RENEW $RETRY >"$work/$1.out" 2>"$work/$1.err" & pids+=($!); eval "pid_$1=$!"; }
wait_leading() { # wait_leading TIMEOUT_MS -> prints the identity leading, among those given
	local deadline=$(($(now_ms) + $1)); shift
	while [ "$(now_ms)" -lt "$deadline" ]; do
		for id in "$@"; do
			if grep -q "^leading $id" "$work/$id.out" 2>/dev/null; then echo "$id"; return 0; fi
		done
		sleep 0.1
	done
	return 1
}

start a
start b
first=$(wait_leading 20000 a b)
ok $? "one of two candidates becomes leader ($first)"
sleep 3
both=$(grep -l '^leading' "$work"/a.out "$work"/b.out 2>/dev/null | wc -l)
ok $([ "$both" = 1 ] && echo 0 || echo 1) "exactly one leader after 3 s ($both)"
holder=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.holderIdentity}')
ok $([ "$holder" = "$first" ] && echo 0 || echo 1) "the Lease names the leader ($holder)"

other=$([ "$first" = a ] && echo b || echo a)
eval "victim=\$pid_$first"
t0=$(now_ms)
kill -KILL "$victim"
got=$(wait_leading $((LEASE + 2 * RETRY + 3000)) "$other")
dt=$(($(now_ms) - t0))
ok $([ "$got" = "$other" ] && [ "$dt" -le $((LEASE + RETRY + 500)) ] && echo 0 || echo 1) \
	"after SIGKILL the other takes over in $dt ms (lease $LEASE ms, retry $RETRY ms)"

# Clean stop: SIGTERM releases the lease; a fresh candidate takes it fast.
start c
sleep 1
eval "survivor=\$pid_$other"
t0=$(now_ms)
kill -TERM "$survivor"
got=$(wait_leading 10000 c)
dt=$(($(now_ms) - t0))
ok $([ "$got" = c ] && [ "$dt" -lt "$LEASE" ] && echo 0 || echo 1) \
	"after SIGTERM the lease is released and taken over in $dt ms (< lease $LEASE ms)"
grep -q "^stopped $other" "$work/$other.out"
ok $? "the stopped leader reported on_stopped_leading"
echo "1..$n"
