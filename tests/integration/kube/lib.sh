# SPDX-License-Identifier: Apache-2.0
# Shared by tests/integration/kube/*.t. Needs KMM_BUILD_DIR and KMM_SOURCE_DIR.
itest=${KMM_BUILD_DIR:-}/tests/unit/kube/kube-itest
testenv=${KMM_SOURCE_DIR:-}/tests/env/testenv

need_itest() {
	if [ ! -x "$itest" ]; then
		echo "1..1"
		echo "not ok 1 - $itest not built"
		exit 1
	fi
}

need_cluster() {
	if [ -z "${KUBECONFIG:-}" ] || [ ! -r "$KUBECONFIG" ]; then
		echo "1..1"
		echo "not ok 1 - no control plane: KUBECONFIG unset (run under tests/run or eval testenv env)"
		exit 1
	fi
}

# restart_apiserver DIR: stops the kube-apiserver that `testenv up` recorded in
# DIR/pids and starts it again with the same command line, log and pid file
# (testenv has no restart verb), then waits for /readyz.
restart_apiserver() {
	local dir=$1 pidf=$1/pids/kube-apiserver.pid pid port i
	pid=$(cat "$pidf")
	mapfile -d '' argv <"/proc/$pid/cmdline"
	kill -TERM "$pid"
	for i in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
	setsid "${argv[@]}" >>"$dir/logs/kube-apiserver.log" 2>&1 </dev/null &
	echo $! >"$pidf"
	port=$(sed -n 's/^apiserver=//p' "$dir/ports")
	for i in $(seq 1 300); do
		if curl -fsS --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
			--key "$dir/pki/admin.key" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "# apiserver did not come back" >&2
	return 1
}

# compact_etcd DIR: compacts the testenv's etcd (plain HTTP on loopback, the
# v3 JSON gateway) at its current revision.
compact_etcd() {
	local port rev
	port=$(sed -n 's/^etcd=//p' "$1/ports")
	rev=$(curl -fsS -X POST "http://127.0.0.1:$port/v3/kv/range" -d '{"key":"AA=="}' |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
	curl -fsS -X POST "http://127.0.0.1:$port/v3/kv/compaction" \
		-d "{\"revision\": \"$rev\", \"physical\": true}" >/dev/null
	echo "# compacted etcd at revision $rev" >&2
}

# Run as a script (`bash lib.sh restart_apiserver DIR`): call one function.
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ $# -gt 0 ]; then
	"$@"
fi
