#!/usr/bin/env bash
# Tests of tests/env/testenv itself, against a real control plane it starts
# in its own run directory (and stops at the end). Prints TAP.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T="$SRC/testenv"
export KMM_TESTENV_DIR
KMM_TESTENV_DIR=$(mktemp -d "${TMPDIR:-/tmp}/kmm-testenv-selftest.XXXXXX")
SECOND_DIR="$KMM_TESTENV_DIR-second"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kmm-testenv-selftest-work.XXXXXX")
PLAN=28
n=0
failed=0

echo "1..$PLAN"
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	local l
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
# check NAME CMD...: ok if CMD succeeds; its output becomes the diagnostic otherwise.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "command: $*" "$out"; fi
}
# until_ok SECONDS CMD...: retry CMD every 0.2 s.
until_ok() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}
bail() { echo "Bail out! $*"; finish; exit 1; }
finish() {
	KMM_TESTENV_DIR="$SECOND_DIR" "$T" down >/dev/null 2>&1 || true
	"$T" down >/dev/null 2>&1 || true
	rm -rf "$WORK"
	if [ $failed -eq 0 ] && [ $n -eq $PLAN ]; then
		rm -rf "$KMM_TESTENV_DIR" "$SECOND_DIR"
	else
		echo "# logs kept in $KMM_TESTENV_DIR/logs and $SECOND_DIR/logs"
	fi
}
trap finish EXIT

# Processes whose command line names a run directory (what `down` must leave at zero).
procs_of() {
	local p c out=""
	for p in /proc/[0-9]*; do
		c=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case $c in *"$1/"*) out="$out ${p#/proc/}" ;; esac
	done
	echo "$out"
}

# 0: waiting on a component that has not exec'ed yet (its /proc/PID/cmdline
# is still the forking shell's, as on a loaded machine) is not "exited".
(
	TE_SRC=$SRC KMM_TESTENV_DIR=$WORK/slowstart
	. "$SRC/lib/common.sh" && . "$SRC/lib/proc.sh" || exit 1
	te_start slow env D="$TE_DIR" bash -c 'sleep 1.5; exec bash -c "sleep 30; :" "$D/marker"'
	(sleep 2.5 && touch "$TE_DIR/ready") &
	out=$(te_wait start slow 20 "the slow starter" test -e "$TE_DIR/ready" 2>&1) || { echo "$out"; exit 1; }
	te_pid_alive slow || { echo "not ours after exec"; exit 1; }
	te_stop slow
) >"$WORK/slowstart.log" 2>&1 && ok "a component slow to exec is waited for, not reported exited" ||
	not_ok "a component slow to exec is waited for, not reported exited" "$(cat "$WORK/slowstart.log")"

# 1: binaries are cached; build is quiet then.
out=$("$T" build 2>&1) && [ -z "$out" ] && ok "build: binaries cached, quiet" ||
	not_ok "build: binaries cached, quiet" "$out"

# 2: up, timed.
start=$SECONDS
if out=$("$T" up 2>&1); then
	took=$((SECONDS - start))
	if [ $took -le 30 ]; then ok "up in ${took} s (<= 30 s)"; else not_ok "up in ${took} s (<= 30 s)" "$out"; fi
else
	not_ok "up" "$out"
	bail "testenv up failed"
fi
echo "# up took ${took} s"

# 3: env exports what the contract says.
envout=$("$T" env)
eval "$envout"
if [ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ] && [ -n "${KMM_TESTENV_REGISTRY:-}" ] &&
	[ -n "${KMM_TESTENV_REGISTRY_TLS:-}" ] && [ -f "${KMM_TESTENV_REGISTRY_TLS_CA:-/nonexistent}" ] &&
	[ -n "${KMM_TESTENV_REGISTRY_USER:-}" ] && [ -n "${KMM_TESTENV_REGISTRY_PASSWORD:-}" ] &&
	[ "$(command -v kubectl)" = "$KMM_TESTENV_DIR/bin/kubectl" ]; then
	ok "env: KUBECONFIG, registries, credentials, kubectl first on PATH"
else
	not_ok "env: KUBECONFIG, registries, credentials, kubectl first on PATH" "$envout"
fi
. "$SRC/versions"

# 4: status, readyz, versions agree.
check "status: every component running" "$T" status
server=$(kubectl version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)
client=$(kubectl version -o json 2>/dev/null | jq -r .clientVersion.gitVersion)
if [ "$server" = "$KUBE_VERSION" ] && [ "$client" = "$KUBE_VERSION" ] &&
	[ "$(kubectl get --raw /readyz)" = ok ]; then
	ok "apiserver /readyz ok, server and kubectl are $KUBE_VERSION"
else
	not_ok "apiserver /readyz ok, server and kubectl are $KUBE_VERSION" "server=$server client=$client"
fi

# 5: namespace
check "create a namespace" kubectl create namespace selftest
check "the namespace gets its default service account" until_ok 30 kubectl -n selftest get sa default

# 7: CRD + custom object
cat >"$WORK/crd.yaml" <<'Y'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.selftest.kmm.example}
spec:
  group: selftest.kmm.example
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties: {size: {type: integer, minimum: 1}}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
Y
cr_ok() {
	kubectl apply -f "$WORK/crd.yaml" &&
		kubectl wait --for=condition=Established --timeout=30s crd/widgets.selftest.kmm.example &&
		until_ok 20 kubectl -n selftest apply -f - <<'Y' &&
apiVersion: selftest.kmm.example/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
Y
		[ "$(kubectl -n selftest get widget w1 -o jsonpath='{.spec.size}')" = 3 ] &&
		! kubectl -n selftest apply -f - 2>/dev/null <<'Y'
apiVersion: selftest.kmm.example/v1
kind: Widget
metadata: {name: bad}
spec: {size: 0}
Y
}
check "CRD established; custom object stored; schema validation rejects a bad one" cr_ok

# 8: RBAC with the unprivileged user, and SA token issuance.
rbac_ok() {
	local u=(kubectl --kubeconfig "$KMM_TESTENV_USER_KUBECONFIG" -n selftest)
	! "${u[@]}" get configmaps >/dev/null 2>&1 || { echo "user could list configmaps before any binding"; return 1; }
	kubectl -n selftest create role cm-reader --verb=get,list --resource=configmaps >/dev/null &&
		kubectl -n selftest create rolebinding cm-reader --role=cm-reader --user=kmm-testenv-user >/dev/null &&
		until_ok 10 "${u[@]}" get configmaps >/dev/null 2>&1 &&
		! "${u[@]}" create configmap x >/dev/null 2>&1
}
check "RBAC: unprivileged user denied, then allowed exactly what a Role grants" rbac_ok
token_ok() {
	local tok who
	tok=$(kubectl -n selftest create token default --duration=10m) || return 1
	who=$(curl -fsS --cacert "$KMM_TESTENV_CA" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
		-X POST -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
		"$KMM_TESTENV_APISERVER/apis/authentication.k8s.io/v1/selfsubjectreviews" | jq -r .status.userInfo.username)
	[ "$who" = system:serviceaccount:selftest:default ] || { echo "token authenticated as '$who'"; return 1; }
}
check "service-account token issued and accepted by the apiserver" token_ok

# 10: simulated nodes
nodes_ok() {
	"$T" nodes add node-a --kernel 6.1.0-18-amd64 --label role=kmm >/dev/null &&
		"$T" nodes add node-b --kernel 6.1.0-20-amd64 >/dev/null &&
		[ "$(kubectl get node node-a -o jsonpath='{.status.nodeInfo.kernelVersion}/{.status.nodeInfo.architecture}/{.metadata.labels.role}')" = 6.1.0-18-amd64/amd64/kmm ] &&
		[ -n "$(kubectl get node node-a -o jsonpath='{.status.nodeInfo.bootID}{.status.nodeInfo.osImage}')" ] &&
		[ "$(kubectl get node node-b -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.status.capacity.pods}')" = True/110 ]
}
check "nodes add: Ready nodes with kernel, arch, bootID, OS image, capacity, labels" nodes_ok
lease_ok() {
	[ -n "$(kubectl -n kube-node-lease get lease node-a -o jsonpath='{.spec.renewTime}')" ]
}
check "node Lease in kube-node-lease" until_ok 20 lease_ok

# 12: pods progress
cat >"$WORK/pods.yaml" <<'Y'
apiVersion: v1
kind: Pod
metadata:
  name: worker
  namespace: selftest
  labels: {kmm.node.kubernetes.io/worker-action: Load}
spec: {nodeName: node-a, restartPolicy: OnFailure, containers: [{name: worker, image: example.invalid/w:1}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: doomed
  namespace: selftest
  labels: {kmm.node.kubernetes.io/pull-pod-type: pull}
  annotations: {kmm.testenv/outcome: fail, kmm.testenv/exit-code: "7"}
spec: {restartPolicy: Never, containers: [{name: c, image: example.invalid/w:1}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: stuck
  namespace: selftest
  labels: {kmm.node.kubernetes.io/worker-action: Load}
  annotations: {kmm.testenv/outcome: hang}
spec: {nodeName: node-b, restartPolicy: OnFailure, containers: [{name: c, image: example.invalid/w:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: selftest}
spec: {containers: [{name: c, image: example.invalid/s:1}]}
Y
phase() { kubectl -n selftest get pod "$1" -o jsonpath='{.status.phase}'; }
is_phase() { [ "$(phase "$1")" = "$2" ]; }
check "apply pods" kubectl apply -f "$WORK/pods.yaml"
check "worker pod (worker-action label) on a simulated node Succeeded" until_ok 30 is_phase worker Succeeded
fail_ok() {
	until_ok 30 is_phase doomed Failed &&
		[ "$(kubectl -n selftest get pod doomed -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}/{.spec.nodeName}')" != "" ] &&
		[ "$(kubectl -n selftest get pod doomed -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')" = 7 ]
}
check "pod annotated outcome=fail was scheduled and Failed with exit code 7" fail_ok
hang_ok() { until_ok 30 is_phase server Running && is_phase stuck Running && sleep 2 && is_phase stuck Running; }
check "long-running pod Running; outcome=hang pod stays Running" hang_ok

# 16: garbage collector
gone() { ! kubectl -n selftest get "$@" >/dev/null 2>&1; }
gc_ok() {
	local uid
	kubectl -n selftest create configmap owner >/dev/null || return 1
	uid=$(kubectl -n selftest get configmap owner -o jsonpath='{.metadata.uid}')
	kubectl -n selftest apply -f - >/dev/null <<Y || return 1
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: "$uid"}]
Y
	kubectl -n selftest delete configmap owner >/dev/null &&
		until_ok 60 gone configmap owned
}
check "garbage collector deletes an owned object after its owner" gc_ok

# 17: DaemonSet
ds_ok() {
	kubectl -n selftest create -f - >/dev/null <<'Y' || return 1
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: c, image: example.invalid/agent:1}]}
Y
	ds_ready() {
		[ "$(kubectl -n selftest get pods -l app=agent --field-selector status.phase=Running \
			-o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort | tr '\n' ' ')" = "node-a node-b " ]
	}
	until_ok 60 ds_ready || { kubectl -n selftest get pods -l app=agent -o wide; return 1; }
}
check "DaemonSet pods created by the controller-manager land on every simulated node" ds_ok

# 18: reboot / upgrade / cordon
node_ops_ok() {
	local b1 b2
	b1=$(kubectl get node node-a -o jsonpath='{.status.nodeInfo.bootID}')
	"$T" nodes reboot node-a >/dev/null || return 1
	b2=$(kubectl get node node-a -o jsonpath='{.status.nodeInfo.bootID}')
	[ -n "$b2" ] && [ "$b1" != "$b2" ] || { echo "bootID $b1 -> $b2"; return 1; }
	"$T" nodes upgrade node-b --kernel 6.5.0-1-amd64 >/dev/null &&
		[ "$(kubectl get node node-b -o jsonpath='{.status.nodeInfo.kernelVersion}')" = 6.5.0-1-amd64 ] &&
		"$T" nodes cordon node-b >/dev/null &&
		[ "$(kubectl get node node-b -o jsonpath='{.spec.unschedulable}')" = true ]
}
check "nodes reboot changes bootID; upgrade changes kernel; cordon" node_ops_ok
remove_ok() {
	"$T" nodes remove node-b >/dev/null || return 1
	! kubectl get node node-b >/dev/null 2>&1 && until_ok 30 no_pods_on node-b
}
no_pods_on() { [ -z "$(kubectl get pods -A --field-selector "spec.nodeName=$1" -o name)" ]; }
check "nodes remove deletes the node and the pods bound to it" remove_ok
bulk_ok() {
	"$T" nodes add bulk --count 3 --kernel 6.2.0-9-amd64 >/dev/null &&
		[ "$(kubectl get nodes -l type=kwok -o json | jq '[.items[] | select(.status.nodeInfo.kernelVersion == "6.2.0-9-amd64" and (.status.conditions[] | select(.type == "Ready") | .status) == "True")] | length')" = 3 ] &&
		"$T" nodes remove bulk-1 bulk-2 bulk-3 >/dev/null
}
check "nodes add --count 3 adds three Ready nodes" bulk_ok

# 19: images
mkdir -p "$WORK/img/opt/lib/modules/6.1.0-18-amd64/extra"
printf 'fake module\n' >"$WORK/img/opt/lib/modules/6.1.0-18-amd64/extra/kmm_ci_a.ko"
push_ok() {
	local dig hdr
	dig=$("$T" image push "$WORK/img" kmm/kmod-a:6.1.0-18-amd64) || return 1
	hdr=$(curl -fsS -D - -o "$WORK/manifest.json" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$KMM_TESTENV_REGISTRY/v2/kmm/kmod-a/manifests/6.1.0-18-amd64") || return 1
	grep -qi "^docker-content-digest: $dig" <<<"$hdr" || { echo "digest $dig not in: $hdr"; return 1; }
	local layer
	layer=$(jq -r '.layers[0].digest' "$WORK/manifest.json")
	curl -fsSL "http://$KMM_TESTENV_REGISTRY/v2/kmm/kmod-a/blobs/$layer" | tar -tzf - |
		grep -qx './opt/lib/modules/6.1.0-18-amd64/extra/kmm_ci_a.ko'
}
check "image push to the HTTP registry; manifest and layer read back" push_ok
push_tls_ok() {
	local dig code
	dig=$("$T" image push "$WORK/img" "$KMM_TESTENV_REGISTRY_TLS/kmm/kmod-secure:v1") || return 1
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KMM_TESTENV_REGISTRY_TLS_CA" \
		"https://$KMM_TESTENV_REGISTRY_TLS/v2/kmm/kmod-secure/manifests/v1")
	[ "$code" = 401 ] || { echo "anonymous got $code"; return 1; }
	[ "$(curl -fsS --cacert "$KMM_TESTENV_REGISTRY_TLS_CA" -u "$KMM_TESTENV_REGISTRY_USER:$KMM_TESTENV_REGISTRY_PASSWORD" \
		-o /dev/null -w '%{http_code}' -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"https://$KMM_TESTENV_REGISTRY_TLS/v2/kmm/kmod-secure/manifests/$dig")" = 200 ]
}
check "image push to the TLS registry; anonymous 401, credentials 200" push_tls_ok

# 21: a second instance at the same time
second_ok() {
	KMM_TESTENV_DIR="$SECOND_DIR" "$T" up 2>&1 || return 1
	local p1 p2
	p1=$(sed -n 's/^apiserver=//p' "$KMM_TESTENV_DIR/ports")
	p2=$(sed -n 's/^apiserver=//p' "$SECOND_DIR/ports")
	[ "$p1" != "$p2" ] && KMM_TESTENV_DIR="$SECOND_DIR" "$T" status >/dev/null &&
		"$T" status >/dev/null && KMM_TESTENV_DIR="$SECOND_DIR" "$T" down 2>&1 &&
		[ -z "$(procs_of "$SECOND_DIR")" ] && "$T" status >/dev/null
}
check "a second instance runs alongside on other ports and stops alone" second_ok

# 22: down
pids=$(cat "$KMM_TESTENV_DIR"/pids/*.pid | tr '\n' ' ')
check "down" "$T" down
left=""
for p in $pids; do [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] && left="$left $p"; done
left="$left$(procs_of "$KMM_TESTENV_DIR")"
if [ -z "${left// /}" ]; then ok "no process left after down"; else not_ok "no process left after down" "left:$left"; fi
check "down again is a no-op" "$T" down

[ $n -eq $PLAN ] || echo "# planned $PLAN tests, ran $n"
[ $failed -eq 0 ] && [ $n -eq $PLAN ]
