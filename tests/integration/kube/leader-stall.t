#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A leader whose connection to the apiserver stalls must stop leading (and its
# writer stop writing) by its renew deadline, before a standby can take the
# Lease: the leader talks through stall-proxy.py, which, once the leader
# leads, stops forwarding without closing anything (HTTP/2: every stream of
# the one connection hangs). The standby talks to the apiserver directly.
# Checked from the apiserver's side: the standby's acquireTime comes after the
# old leader stopped, every ConfigMap the old leader wrote was issued before
# it stopped (also those the proxy delivers after it resumes), and after the
# proxy resumes the old leader, now a candidate again, does not take the
# Lease back (holder and leaseTransitions unchanged).
set -u
. "$(dirname "$0")/lib.sh"
need_cluster
leader_bin=${KMM_BUILD_DIR:-}/tests/unit/kube/kube-leader
proxy_py=$(dirname "$0")/stall-proxy.py
if [ ! -x "$leader_bin" ]; then echo "1..1"; echo "not ok 1 - $leader_bin not built"; exit 1; fi
if ! command -v python3 >/dev/null; then echo "1..1"; echo "not ok 1 - python3 missing (the proxy)"; exit 1; fi
kc="$KMM_TESTENV_BIN/kubectl --kubeconfig $KUBECONFIG"
# Defaults are 15 s / 10 s / 2 s; short ones keep the test short.
LEASE=6000 RENEW=4000 RETRY=1000
ns=kube-leader-stall-$$
lease=kmm-stall
work=$(mktemp -d)
pids=()
cleanup() {
	exec 2>/dev/null # no "Killed" job notices
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	$kc delete namespace "$ns" --wait=false >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
bail() { echo "not ok $((n + 1)) - $1"; echo "1..$((n + 1))"; exit 1; }
now_ms() { date +%s%3N; }
ms_of() { date -d "$1" +%s%3N 2>/dev/null; } # RFC 3339 (MicroTime) -> unix ms
wait_line() { # wait_line FILE REGEX TIMEOUT_MS -> prints the first matching line
	local deadline=$(($(now_ms) + $3))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

$kc create namespace "$ns" >/dev/null || bail "cannot create namespace $ns"
api_port=$(sed -n 's#^ *server: https://127\.0\.0\.1:\([0-9]*\).*#\1#p' "$KUBECONFIG" | head -1)
[ -n "$api_port" ] || bail "no https://127.0.0.1:PORT server in $KUBECONFIG"
python3 "$proxy_py" "$api_port" "$work/proxy.port" 2>"$work/proxy.err" &
proxy=$!
pids+=($proxy)
for _ in $(seq 1 100); do [ -s "$work/proxy.port" ] && break; sleep 0.05; done
[ -s "$work/proxy.port" ] || bail "stall-proxy.py did not start: $(cat "$work/proxy.err")"
proxy_port=$(cat "$work/proxy.port")
sed "s#https://127\.0\.0\.1:$api_port#https://127.0.0.1:$proxy_port#" "$KUBECONFIG" >"$work/proxied.kubeconfig"

KUBECONFIG=$work/proxied.kubeconfig KUBE_LEADER_DEBUG=1 \
	"$leader_bin" "$ns" "$lease" a $LEASE $RENEW $RETRY write >"$work/a.out" 2>"$work/a.err" &
pids+=($!)
wait_line "$work/a.out" '^leading a' 20000 >/dev/null
ok $? "the candidate behind the proxy becomes leader"
"$leader_bin" "$ns" "$lease" b $LEASE $RENEW $RETRY >"$work/b.out" 2>"$work/b.err" &
pids+=($!)
wait_line "$work/a.out" '^wrote a 3 ' 5000 >/dev/null
ok $? "the leader writes through the proxy"
sleep 1
grep -q '^leading b' "$work/b.out"
ok $([ $? = 0 ] && echo 1 || echo 0) "the standby follows while the leader renews"

kill -USR1 "$proxy"
t_stall=$(now_ms)
# The old leader's last renewal that reached the apiserver (read directly,
# long before the standby may take over).
sleep 0.2
renewed=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.renewTime}')
renewed_ms=$(ms_of "$renewed")
[ -n "$renewed_ms" ] || bail "cannot read the Lease's renewTime ($renewed)"
echo "# stalled at $t_stall, last renewal $renewed ($((t_stall - renewed_ms)) ms before)"

line=$(wait_line "$work/b.out" '^leading b' $((LEASE + RENEW + 2 * RETRY)))
t_b=$(echo "$line" | awk '{ print $3 }')
ok $([ -n "$t_b" ] && echo 0 || echo 1) "the standby takes over while the old leader is stalled"
t_b=${t_b:-$(now_ms)}
acquired=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.acquireTime}')
acquired_ms=$(ms_of "$acquired")
acquired_ms=${acquired_ms:-0}
ok $([ $((acquired_ms - renewed_ms)) -le $((LEASE + RETRY)) ] && echo 0 || echo 1) \
	"(b) it takes over within lease + retry period of the last renewal ($((acquired_ms - renewed_ms)) ms; lease $LEASE, retry $RETRY)"

t_stop=$(awk '/^stopped a/ { print $3; exit }' "$work/a.out")
if [ -n "$t_stop" ]; then
	ok $([ "$t_stop" -le $((renewed_ms + RENEW + 250)) ] && echo 0 || echo 1) \
		"the stalled leader stops leading by its renew deadline ($((t_stop - renewed_ms)) ms after its last renewal; deadline $RENEW)"
	ok $([ "$t_stop" -lt "$acquired_ms" ] && echo 0 || echo 1) \
		"(a) it stopped before the standby's acquireTime ($((acquired_ms - t_stop)) ms before)"
else
	ok 1 "the stalled leader stops leading by its renew deadline (still leading $(($(now_ms) - renewed_ms)) ms after its last renewal; deadline $RENEW)"
	ok 1 "(a) it stopped before the standby's acquireTime (not stopped)"
fi

# Keep stalling past an acquire attempt's timeout: each request's own timeout
# must fire on the hung HTTP/2 stream, not only the elector's deadline.
sleep "$(awk -v ms=$((renewed_ms + 2 * RENEW + RETRY + 500 - $(now_ms))) 'BEGIN { if (ms > 0) printf "%.3f", ms / 1000; else print 0 }')"
grep -q 'leader: acquire failed.*Timeout was reached' "$work/a.err"
ok $? "while stalled, curl's timeout ends the old leader's requests on the hung stream ($(grep -c 'leader: acquire failed.*Timeout was reached' "$work/a.err") attempts timed out)"

kill -USR2 "$proxy"
t_resume=$(now_ms)
# The old leader, a candidate again, now reaches the apiserver: it must see
# the standby's renewals and leave the Lease alone.
sleep $(((LEASE + 2 * RETRY) / 1000))
holder=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.holderIdentity}')
transitions=$($kc -n "$ns" get lease "$lease" -o jsonpath='{.spec.leaseTransitions}')
ok $([ "$holder" = b ] && [ "$transitions" = 1 ] && echo 0 || echo 1) \
	"after the proxy resumes the Lease stays the standby's (holder $holder, transitions $transitions)"
leads=$(grep -c '^leading a' "$work/a.out")
stops=$(grep -c '^stopped b' "$work/b.out")
ok $([ "$leads" = 1 ] && [ "$stops" = 0 ] && echo 0 || echo 1) \
	"the old leader did not lead again, the standby did not stop ($leads, $stops)"

# What the old leader wrote, as the apiserver has it (the proxy has delivered
# whatever it held back).
t_stop=$(awk '/^stopped a/ { print $3; exit }' "$work/a.out")
$kc -n "$ns" get configmaps -l kmm-test-writer=a \
	-o jsonpath='{range .items[*]}{.metadata.name} {.data.issued}{"\n"}{end}' >"$work/writes"
count=$(wc -l <"$work/writes")
# Issued after it stopped, or (today's stopped line may come only once the
# proxy resumed) at or after the standby's acquireTime.
late=$(awk -v stop="${t_stop:-$acquired_ms}" -v acq="$acquired_ms" '$2 > stop || $2 >= acq' "$work/writes" | wc -l)
last=$(sort -k2 -n "$work/writes" | tail -1 | awk '{ print $2 }')
ok $([ "$count" -gt 0 ] && [ "$late" = 0 ] && echo 0 || echo 1) \
	"(a) none of the old leader's $count writes was issued after it stopped or once the standby led ($late late; the last $((${last:-0} - acquired_ms)) ms from the standby's acquireTime)"
echo "# stall $t_stall, last renewal $renewed_ms, stopped ${t_stop:-none}, standby acquireTime $acquired_ms (leading $t_b), resumed $t_resume"
echo "1..$n"
