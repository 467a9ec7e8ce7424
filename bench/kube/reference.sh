#!/usr/bin/env bash
# Reference write throughput of the apiserver, independent of lib/kube: curl's
# own multi interface with HTTP/2 multiplexing (--parallel) POSTing N
# configmaps shaped like bench-kube's, K in flight. Prints requests/s.
# Usage: bench/kube/reference.sh [N] [K]   (KUBECONFIG from testenv env)
set -euo pipefail
N=${1:-600} K=${2:-16}
: "${KMM_TESTENV_DIR:?eval \"\$(tests/env/testenv env)\" first}"
dir=$KMM_TESTENV_DIR
server=$(sed -n 's/^ *server: //p' "$KUBECONFIG" | head -1)
ns=bench-ref-$$
work=$(mktemp -d)
trap 'rm -rf "$work"; "$KMM_TESTENV_BIN/kubectl" delete ns "$ns" --wait=false >/dev/null 2>&1' EXIT
"$KMM_TESTENV_BIN/kubectl" create ns "$ns" >/dev/null
{
	for i in $(seq 1 "$N"); do
		printf 'url = "%s/api/v1/namespaces/%s/configmaps"\n' "$server" "$ns"
		printf 'data = "{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"ConfigMap\\",\\"metadata\\":{\\"name\\":\\"r-%d\\",\\"labels\\":{\\"bench\\":\\"kube\\"}},\\"data\\":{\\"payload\\":\\"0123456789abcdef0123456789abcdef\\"}}"\n' "$i"
		printf 'output = "/dev/null"\nsilent\nshow-error\nhttp2\ncacert = "%s"\ncert = "%s"\nkey = "%s"\nheader = "Content-Type: application/json"\n' \
			"$dir/pki/ca.crt" "$dir/pki/admin.crt" "$dir/pki/admin.key"
		# `next` resets per-URL options, so each section repeats them.
		[ "$i" -lt "$N" ] && printf 'next\n'
	done
} >"$work/cfg"
t0=$(date +%s.%N)
curl -sS --parallel --parallel-max "$K" -K "$work/cfg"
t1=$(date +%s.%N)
n=$("$KMM_TESTENV_BIN/kubectl" -n "$ns" get cm -l bench=kube --no-headers | wc -l)
python3 -c "print('reference_curl_parallel_%s %.0f requests/s (%s creates ok of %s)' % ($K, $n / ($t1 - $t0), $n, $N))"
