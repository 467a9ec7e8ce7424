#!/usr/bin/env bash
# Batched writes and Events lose nothing when the apiserver answers 429 (with
# Retry-After) and 500 (before and after the write): faulty-proxy.go, an
# HTTP/2 TLS front of the testenv's apiserver, fails a fraction of the writes;
# kube-batch-itest checks every object and Event on the apiserver itself.
set -u
. "$(dirname "$0")/lib.sh"
need_cluster
: "${KMM_TESTENV_DIR:?KMM_TESTENV_DIR unset}"
: "${KMM_TESTENV_APISERVER:?KMM_TESTENV_APISERVER unset (eval testenv env)}"
batch_itest=${KMM_BUILD_DIR:-}/tests/unit/kube/kube-batch-itest
if [ ! -x "$batch_itest" ]; then
	echo "1..1"
	echo "not ok 1 - $batch_itest not built"
	exit 1
fi
# The proxy is built with the testenv's Go toolchain and cache.
TE_SRC=$KMM_SOURCE_DIR/tests/env
# shellcheck source=../../env/lib/common.sh
. "$TE_SRC/lib/common.sh"
if ! te_gobin >/dev/null; then
	echo "1..1"
	echo "not ok 1 - no Go toolchain to build faulty-proxy.go (go on PATH or /usr/local/go/bin/go)"
	exit 1
fi

dir=$(mktemp -d)
proxy_pid=
cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

if ! (cd "$(dirname "$0")" && te_go build -o "$dir/faulty-proxy" faulty-proxy.go) >"$dir/build.log" 2>&1; then
	echo "1..1"
	echo "not ok 1 - building faulty-proxy.go failed: $(tail -n 3 "$dir/build.log" | tr '\n' ' ')"
	exit 1
fi
ns=kube-batch-$$-$RANDOM
"$dir/faulty-proxy" -upstream "$KMM_TESTENV_APISERVER" -pki "$KMM_TESTENV_DIR/pki" \
	-match "/namespaces/$ns/" -dir "$dir" 2>"$dir/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 100); do
	[ -s "$dir/port" ] && break
	kill -0 "$proxy_pid" 2>/dev/null || break
	sleep 0.1
done
if [ ! -s "$dir/port" ]; then
	echo "1..1"
	echo "not ok 1 - faulty-proxy did not start: $(tail -n 3 "$dir/proxy.log" | tr '\n' ' ')"
	exit 1
fi
"$batch_itest" "$ns" "https://127.0.0.1:$(cat "$dir/port")" "$dir/ca.crt"
