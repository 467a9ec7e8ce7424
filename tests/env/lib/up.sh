# shellcheck shell=bash
# testenv up / down / status / env

TE_PORTS_DIR=/tmp/kmm-testenv-ports

te_ports_file() { echo "$TE_PORTS_DIR/$(printf '%s' "$TE_DIR" | sha256sum | cut -c1-16).ports"; }

te_curl_api() {
	local pki="$TE_DIR/pki"
	curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
		"https://127.0.0.1:$(te_port apiserver)$1"
}

te_port() { sed -n "s/^$1=//p" "$TE_DIR/ports"; }

te_readyz() { [ "$(te_curl_api /readyz)" = ok ]; }

te_default_sa() { te_kubectl -n default get serviceaccount default; }

te_kubectl() { "$TE_BIN_DIR/kubectl" --kubeconfig "$TE_DIR/kubeconfig" "$@"; }

te_any_alive() {
	local c
	for c in $(te_components); do te_pid_alive "$c" && return 0; done
	return 1
}

te_up_cleanup() {
	if te_any_alive; then
		te_info "up did not finish; stopping what had started (logs stay in $TE_DIR/logs)"
		te_stop_all
	fi
	rm -f "$(te_ports_file)"
}

# Tools `up` needs, checked before anything starts.
te_up_preflight() {
	local t pkg missing=""
	for t in openssl:openssl curl:curl jq:jq ss:iproute2 flock:util-linux setsid:util-linux \
		docker-registry:docker-registry htpasswd:apache2-utils sha256sum:coreutils; do
		command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t%%:*} (Debian package ${t#*:}),"
	done
	[ -z "$missing" ] || te_die "up: step 'preflight': missing${missing%,}; run scripts/install-deps"
}

# Requests by the ServiceAccounts of kmm's namespace, appended to
# $KMM_TESTENV_AUDIT_LOG: Metadata (who, verb, object, the RBAC decision) for
# all, and the request body of writes (the ownerReferences the finalizers rules
# are checked for), except Secrets' and ConfigMaps' (their data stays out).
te_audit_policy() {
	cat <<'A'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts:kmm-operator-system"]
  resources: [{group: "", resources: [secrets, configmaps]}]
- level: Request
  userGroups: ["system:serviceaccounts:kmm-operator-system"]
  verbs: [create, update, patch]
- level: Metadata
  userGroups: ["system:serviceaccounts:kmm-operator-system"]
- level: None
A
}

te_up() {
	local t0=$SECONDS scale=0
	while [ $# -gt 0 ]; do
		case $1 in
		--scale) scale=1; shift ;;
		*) te_die "up: unknown option $1 (usage: testenv up [--scale])" ;;
		esac
	done
	te_up_preflight
	te_build
	case $TE_DIR in /) te_die "refusing KMM_TESTENV_DIR=/" ;; esac
	if [ -d "$TE_DIR/pids" ] && te_any_alive; then
		if te_status_quiet; then
			[ $scale = 0 ] || [ -f "$TE_DIR/scale" ] ||
				te_die "already up in $TE_DIR without --scale; run '$TE_SRC/testenv down' first"
			te_info "already up in $TE_DIR"
			return 0
		fi
		te_die "a partly running testenv is in $TE_DIR; run '$TE_SRC/testenv down' first"
	fi
	# Fresh state each time: the run directory belongs to testenv.
	if [ -e "$TE_DIR" ] && [ ! -f "$TE_DIR/.kmm-testenv" ] && [ -n "$(ls -A "$TE_DIR" 2>/dev/null)" ]; then
		te_die "$TE_DIR exists, is not empty and was not made by testenv; choose another KMM_TESTENV_DIR"
	fi
	rm -rf "$TE_DIR"
	mkdir -p "$TE_DIR"/{logs,pids,bin,etcd,registry/http,registry/tls,kwok}
	touch "$TE_DIR/.kmm-testenv"
	# Interrupted or failed half-way: stop what has started.
	trap 'te_info "interrupted"; exit 130' INT TERM
	trap 'te_up_cleanup' EXIT
	ln -s "$TE_BIN_DIR/kubectl" "$TE_DIR/bin/kubectl"
	# helm when `testenv build` made it (up does not wait for its build).
	[ -x "$TE_BIN_DIR/helm" ] && ln -s "$TE_BIN_DIR/helm" "$TE_DIR/bin/helm"

	# Ports, reserved under a lock until `down`.
	mkdir -p "$TE_PORTS_DIR"
	local ports
	exec 9>"$TE_PORTS_DIR/.lock"
	flock 9
	ports=$(te_free_ports 6)
	echo "$ports" | tr ' ' '\n' >"$(te_ports_file)"
	flock -u 9
	exec 9>&-
	# shellcheck disable=SC2086 # one word per port
	set -- $ports
	cat >"$TE_DIR/ports" <<P
etcd=$1
etcd-peer=$2
apiserver=$3
registry=$4
registry-tls=$5
kwok=$6
P
	local api="https://127.0.0.1:$3"
	# --scale: settings for thousands of simulated nodes on 2 cores (docs/testenv.md,
	# "Scale mode"); the default values are what the test suites run with.
	local lease_s=40 heartbeat_ms=20000 kwok_par=4 kcm_scale=()
	if [ $scale = 1 ]; then
		lease_s=1200 heartbeat_ms=1200000 kwok_par=16
		kcm_scale=(--node-monitor-grace-period 1200s --node-startup-grace-period 1200s
			--node-monitor-period 15s --kube-api-qps 100 --kube-api-burst 200)
		echo "lease=${lease_s}s heartbeat=$((heartbeat_ms / 1000))s" >"$TE_DIR/scale"
	fi

	te_info "starting in $TE_DIR (logs in $TE_DIR/logs)"
	te_pki_make || te_fail pki "" "openssl could not make the certificates in $TE_DIR/pki"
	te_kubeconfig "$TE_DIR/kubeconfig" admin "$api"
	te_kubeconfig "$TE_DIR/user.kubeconfig" user "$api"
	te_kubeconfig "$TE_DIR/controller-manager.kubeconfig" controller-manager "$api"
	te_kubeconfig "$TE_DIR/scheduler.kubeconfig" scheduler "$api"
	te_kubeconfig "$TE_DIR/kwok.kubeconfig" kwok "$api"

	te_start etcd "$TE_BIN_DIR/etcd" --name testenv --data-dir "$TE_DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
		--listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
		--initial-cluster "testenv=http://127.0.0.1:$2" --initial-cluster-state new \
		--unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
	te_registries_start
	te_wait etcd etcd 30 "etcd /health" curl -fsS --max-time 2 "http://127.0.0.1:$1/health"

	# KMM_TESTENV_AUDIT_LOG: what kmm's ServiceAccounts ask the apiserver, for
	# tests/node/rbac.t (docs/testenv.md, "Audit log"); OwnerReferencesPermissionEnforcement
	# then checks the finalizers rules that blockOwnerDeletion needs, as OpenShift does.
	local audit=() admission=NodeRestriction
	if [ -n "${KMM_TESTENV_AUDIT_LOG:-}" ]; then
		te_audit_policy >"$TE_DIR/audit-policy.yaml"
		audit=(--audit-policy-file "$TE_DIR/audit-policy.yaml" --audit-log-path "$KMM_TESTENV_AUDIT_LOG"
			--audit-log-format json)
		admission=$admission,OwnerReferencesPermissionEnforcement
	fi
	# shellcheck disable=SC2086 # KMM_TESTENV_*_ARGS: extra flags, split on spaces
	te_start kube-apiserver "$TE_BIN_DIR/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$1" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$3" \
		--tls-cert-file "$TE_DIR/pki/apiserver.crt" --tls-private-key-file "$TE_DIR/pki/apiserver.key" \
		--client-ca-file "$TE_DIR/pki/ca.crt" \
		--kubelet-client-certificate "$TE_DIR/pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$TE_DIR/pki/apiserver-kubelet-client.key" \
		--authorization-mode Node,RBAC \
		--enable-admission-plugins "$admission" "${audit[@]}" \
		--allow-privileged=true \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$TE_DIR/pki/sa.pub" \
		--service-account-signing-key-file "$TE_DIR/pki/sa.key" \
		--service-cluster-ip-range 10.96.0.0/16 \
		--endpoint-reconciler-type none \
		--profiling=false \
		--v 1 ${KMM_TESTENV_APISERVER_ARGS:-}
	te_wait kube-apiserver kube-apiserver 120 "kube-apiserver /readyz" te_readyz

	# shellcheck disable=SC2086 # KMM_TESTENV_*_ARGS: extra flags, split on spaces
	te_start kube-controller-manager "$TE_BIN_DIR/kube-controller-manager" \
		--kubeconfig "$TE_DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$TE_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$TE_DIR/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
		--controllers '*' --use-service-account-credentials=true \
		--service-account-private-key-file "$TE_DIR/pki/sa.key" \
		--root-ca-file "$TE_DIR/pki/ca.crt" \
		--cluster-signing-cert-file "$TE_DIR/pki/ca.crt" --cluster-signing-key-file "$TE_DIR/pki/ca.key" \
		--cluster-name kmm-testenv --allocate-node-cidrs=false \
		--concurrent-gc-syncs 10 --profiling=false --v 1 "${kcm_scale[@]}" \
		${KMM_TESTENV_CONTROLLER_MANAGER_ARGS:-}
	# shellcheck disable=SC2086 # KMM_TESTENV_*_ARGS: extra flags, split on spaces
	te_start kube-scheduler "$TE_BIN_DIR/kube-scheduler" \
		--kubeconfig "$TE_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig "$TE_DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig "$TE_DIR/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false --v 1 \
		${KMM_TESTENV_SCHEDULER_ARGS:-}
	{
		cat <<K
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  manageAllNodes: false
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  nodeIP: 127.0.0.1
  cidr: 10.244.0.1/16
  serverAddress: 127.0.0.1:$6
  nodeLeaseDurationSeconds: $lease_s
  nodeLeaseParallelism: $kwok_par
  nodePlayStageParallelism: $kwok_par
  podPlayStageParallelism: $((kwok_par * 2))
  podsOnNodeSyncParallelism: $kwok_par
K
		# The heartbeat Stage's delay is the only 20000 in the file.
		sed "s/durationMilliseconds: 20000\$/durationMilliseconds: $heartbeat_ms/" "$TE_SRC/kwok/stages.yaml"
	} >"$TE_DIR/kwok/kwok.yaml"
	te_start kwok "$TE_BIN_DIR/kwok" --kubeconfig "$TE_DIR/kwok.kubeconfig" \
		--config "$TE_DIR/kwok/kwok.yaml"

	te_wait registry registry 30 "registry on 127.0.0.1:$4" \
		curl -fsS --max-time 2 "http://127.0.0.1:$4/v2/"
	te_wait registry-tls registry-tls 30 "TLS registry on 127.0.0.1:$5" te_registry_tls_probe
	te_wait kube-controller-manager kube-controller-manager 120 \
		"the default service account (controller-manager)" te_default_sa
	te_wait kube-scheduler kube-scheduler 30 "kube-scheduler" te_pid_alive kube-scheduler
	te_wait kwok kwok 30 "kwok on 127.0.0.1:$6" curl -fsS --max-time 2 "http://127.0.0.1:$6/healthz"

	te_write_env
	trap - INT TERM EXIT
	te_info "up in $((SECONDS - t0)) s: apiserver $api, registries 127.0.0.1:$4 (http) 127.0.0.1:$5 (tls)"
	te_info "use it: eval \"\$($TE_SRC/testenv env)\""
}

te_write_env() {
	local p=$TE_DIR/ports
	{
		echo "export KMM_TESTENV_DIR='$TE_DIR'"
		echo "export KUBECONFIG='$TE_DIR/kubeconfig'"
		echo "export KMM_TESTENV_USER_KUBECONFIG='$TE_DIR/user.kubeconfig'"
		echo "export KMM_TESTENV_APISERVER='https://127.0.0.1:$(te_port apiserver)'"
		echo "export KMM_TESTENV_CA='$TE_DIR/pki/ca.crt'"
		echo "export KMM_TESTENV_REGISTRY='127.0.0.1:$(te_port registry)'"
		echo "export KMM_TESTENV_REGISTRY_TLS='127.0.0.1:$(te_port registry-tls)'"
		echo "export KMM_TESTENV_REGISTRY_TLS_CA='$TE_DIR/pki/ca.crt'"
		echo "export KMM_TESTENV_REGISTRY_TLS_CERT_DIR='$TE_DIR/registry/certs.d'"
		echo "export KMM_TESTENV_REGISTRY_USER='$(cat "$TE_DIR/registry/user")'"
		echo "export KMM_TESTENV_REGISTRY_PASSWORD='$(cat "$TE_DIR/registry/password")'"
		echo "export KMM_TESTENV_REGISTRY_AUTHFILE='$TE_DIR/registry/auth.json'"
		echo "export KMM_TESTENV_BIN='$TE_BIN_DIR'"
		[ ! -f "$TE_DIR/scale" ] || echo "export KMM_TESTENV_SCALE='$(cat "$TE_DIR/scale")'"
		echo "export PATH='$TE_DIR/bin':\"\$PATH\""
	} >"$TE_DIR/env"
	: "$p"
}

te_env() {
	[ -f "$TE_DIR/env" ] || te_die "no testenv in $TE_DIR; run '$TE_SRC/testenv up' first"
	cat "$TE_DIR/env"
}

te_down() {
	if [ ! -d "$TE_DIR" ]; then
		return 0
	fi
	[ -f "$TE_DIR/.kmm-testenv" ] || te_die "$TE_DIR was not made by testenv; not touching it"
	te_stop_all
	rm -f "$(te_ports_file)"
	if [ "${KMM_TESTENV_KEEP:-0}" = 1 ]; then
		te_info "down; state and logs kept in $TE_DIR"
	else
		# Logs are kept (small, useful after a failure); state is removed.
		rm -rf "$TE_DIR/etcd" "$TE_DIR/registry/http/data" "$TE_DIR/registry/tls/data"
		rm -f "$TE_DIR/env"
		te_info "down"
	fi
}

# Exit status only: 0 when every component runs and the apiserver is ready.
te_status_quiet() {
	local c
	[ -f "$TE_DIR/ports" ] || return 1
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok registry registry-tls; do
		te_pid_alive "$c" || return 1
	done
	te_readyz
}

te_status() {
	if [ ! -f "$TE_DIR/ports" ]; then
		echo "testenv: not up ($TE_DIR)"
		return 3
	fi
	local c rc=0 state
	printf '%-24s %-8s %-8s %s\n' COMPONENT STATE PID PORT
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok registry registry-tls; do
		if te_pid_alive "$c"; then state=running; else state=stopped; rc=1; fi
		printf '%-24s %-8s %-8s %s\n' "$c" "$state" "$(cat "$TE_DIR/pids/$c.pid" 2>/dev/null || echo -)" \
			"$(te_port "${c#kube-}")"
	done
	if te_pid_alive kube-apiserver && te_readyz; then
		echo "apiserver /readyz: ok"
		te_kubectl get nodes -L kubernetes.io/arch \
			-o custom-columns='NODE:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,KERNEL:.status.nodeInfo.kernelVersion,BOOT-ID:.status.nodeInfo.bootID,UNSCHEDULABLE:.spec.unschedulable' 2>/dev/null || true
	else
		echo "apiserver /readyz: not ok"
		rc=1
	fi
	echo "run dir: $TE_DIR"
	return $rc
}
