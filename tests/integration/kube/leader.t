#!/usr/bin/env bash
# Two processes elect one leader on a Lease; after SIGKILL of the leader the
# other (which watches the Lease, so it sees every renewal at once) takes over
# within the lease duration of the last renewal, hence of the kill; after
# SIGTERM (clean stop) the lease is released and taken over at once.
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
# The takeover comes lease duration after the last renewal the follower saw,
# so a kill right after a renewal is followed by one a few ms over the lease
# duration. Kill half a retry period after a renewal instead: the leader
# renews every RETRY ms from the time it started leading (printed by
# kube-leader), plus the few ms each GET+PUT takes.
led=$(awk '/^leading/ { print $3; exit }' "$work/$first.out")
k=1
while [ $((led + k * RETRY + RETRY / 2)) -le $(($(now_ms) + 50)) ]; do k=$((k + 1)); done
sleep "$(awk -v ms=$((led + k * RETRY + RETRY / 2 - $(now_ms))) 'BEGIN { printf "%.3f", ms / 1000 }')"
t0=$(now_ms)
kill -KILL "$victim"
# Its last renewal, read before the survivor writes the Lease (≈ 5 s later).
renewed=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.renewTime}')
renewed_ms=$(date -d "$renewed" +%s%3N 2>/dev/null || echo "$t0")
got=$(wait_leading $((LEASE + 2 * RETRY + 3000)) "$other")
# kube-leader prints when it started leading: no polling delay in dt.
t1=$(awk '/^leading/ { print $3; exit }' "$work/$other.out" 2>/dev/null)
t1=${t1:-$(now_ms)}
dt=$((t1 - t0))
since=$((t1 - renewed_ms))
ok $([ "$got" = "$other" ] && [ "$dt" -le "$LEASE" ] && echo 0 || echo 1) \
	"after SIGKILL the other takes over in $dt ms (lease $LEASE ms; $since ms after the last renewal, killed $((t0 - renewed_ms)) ms after it)"
ok $([ "$got" = "$other" ] && [ "$since" -le $((LEASE + 250)) ] && echo 0 || echo 1) \
	"the takeover comes within the lease duration (+ 250 ms of requests) of the last renewal ($since ms)"

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
