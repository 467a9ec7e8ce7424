#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kmmctl status against the testenv: simulated nodes, a Module with its status,
# NodeModulesConfigs with spec and status (the bootID of the node), node
# labels, a MIC whose image is being built, a worker pod stuck pulling its
# image and an Event, written as the operator would; each output format. No
# operator runs: what kmmctl reads is exactly what this suite wrote. TAP on stdout.
set -u
SRC=${KMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
BUILD=${KMM_BUILD_DIR:-$SRC/build/dev}
K=$BUILD/src/cli/kmmctl
TE=$SRC/tests/env/testenv
ID=$$
NS=kmm-api-status-$ID
A=kmm-api-status-$ID-a
B=kmm-api-status-$ID-b
C=kmm-api-status-$ID-c
D=kmm-api-status-$ID-d
MOD=st-mod
T=$(mktemp -d)
. "$SRC/tests/integration/api/tap.sh"
cleanup() {
	kubectl delete nmc "$A" "$B" "$D" >/dev/null 2>&1
	kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
	"$TE" nodes remove "$A" "$B" "$C" "$D" >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

echo "1..16"
if [ -z "${KUBECONFIG:-}" ] || [ ! -x "$K" ]; then
	echo "# KUBECONFIG unset or $K not built: run under tests/run"
	exit 1
fi
for tool in kubectl python3; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "# missing $tool"
		exit 1
	fi
done
kubectl apply -k "$SRC/deploy/crd" >/dev/null 2>&1
for c in modules nodemodulesconfigs moduleimagesconfigs; do
	kubectl wait --for=condition=Established "crd/$c.kmm.sigs.x-k8s.io" --timeout=60s >/dev/null 2>&1
done

# A and B load the 6.1 image, C (GKE kernel) needs a build, D is cordoned.
"$TE" nodes add "$A" --kernel 6.1.0-18-amd64 --label "kmm-api-status=$ID" >"$T/out" 2>&1 &&
	"$TE" nodes add "$B" --kernel 6.1.0-18-amd64 --label "kmm-api-status=$ID" >>"$T/out" 2>&1 &&
	"$TE" nodes add "$C" --kernel 5.15.0-1051-gke+ --label "kmm-api-status=$ID" >>"$T/out" 2>&1 &&
	"$TE" nodes add "$D" --kernel 6.1.0-18-amd64 --label "kmm-api-status=$ID" >>"$T/out" 2>&1 &&
	"$TE" nodes cordon "$D" >>"$T/out" 2>&1
rc=$?
check "four simulated nodes (one cordoned)" '[ $rc -eq 0 ]'
BOOT_A=$(kubectl get node "$A" -o jsonpath='{.status.nodeInfo.bootID}')
BOOT_D=$(kubectl get node "$D" -o jsonpath='{.status.nodeInfo.bootID}')

kubectl create namespace "$NS" >/dev/null 2>&1
IMG61=reg.local/st:6.1.0-18-amd64
IMG515=reg.local/st-old:5.15.0
cat <<Y | kubectl apply -f - >"$T/out" 2>&1
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: $MOD, namespace: $NS}
spec:
  selector: {kmm-api-status: "$ID"}
  moduleLoader:
    container:
      modprobe: {moduleName: kmm_ci_a}
      kernelMappings:
      - {literal: 6.1.0-18-amd64, containerImage: 'reg.local/st:\${KERNEL_FULL_VERSION}'}
      - {regexp: '^5\.', containerImage: 'reg.local/st-old:\${KERNEL_XYZ}', build: {dockerfileConfigMap: {name: df}}}
  devicePlugin: {container: {image: 'reg.local/st-dp:1'}}
---
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: ModuleImagesConfig
metadata: {name: $MOD, namespace: $NS}
spec:
  images:
  - {image: '$IMG61', kernelVersion: 6.1.0-18-amd64}
  - {image: '$IMG515', kernelVersion: 5.15.0-1051-gke, build: {dockerfileConfigMap: {name: df}}}
Y
rc=$?
kubectl patch module "$MOD" -n "$NS" --subresource=status --type=merge -p '{"status":{"moduleLoader":{"nodesMatchingSelectorNumber":4,"desiredNumber":3,"availableNumber":1},"devicePlugin":{"nodesMatchingSelectorNumber":4,"desiredNumber":1,"availableNumber":1}}}' >>"$T/out" 2>&1 &&
	kubectl patch mic "$MOD" -n "$NS" --subresource=status --type=merge -p "{\"status\":{\"imagesStates\":[{\"image\":\"$IMG61\",\"status\":\"Exists\"},{\"image\":\"$IMG515\",\"status\":\"NeedsBuilding\"}]}}" >>"$T/out" 2>&1
rc2=$?
check "Module and MIC with status created" '[ $rc -eq 0 ] && [ $rc2 -eq 0 ]'

entry() { # node: the NMC entry (config) of the Module
	echo "{\"name\":\"$MOD\",\"namespace\":\"$NS\",\"config\":{\"kernelVersion\":\"6.1.0-18-amd64\",\"containerImage\":\"$IMG61\",\"modprobe\":{\"moduleName\":\"kmm_ci_a\"}}"
}
nmc() { # node spec-entries status-entries
	printf '{"apiVersion":"kmm.sigs.x-k8s.io/v1beta1","kind":"NodeModulesConfig","metadata":{"name":"%s"},"spec":{"modules":[%s]}}' "$1" "$2" |
		kubectl apply -f - >>"$T/out" 2>&1 &&
		kubectl patch nmc "$1" --subresource=status --type=merge -p "{\"status\":{\"modules\":[$3]}}" >>"$T/out" 2>&1
}
: >"$T/out"
nmc "$A" "$(entry)}" "$(entry),\"bootId\":\"$BOOT_A\",\"lastTransitionTime\":\"2026-12-07T09:00:00Z\"}" &&
	nmc "$B" "$(entry)}" "" &&
	nmc "$D" "" "$(entry),\"bootId\":\"$BOOT_D\",\"lastTransitionTime\":\"2026-12-07T08:00:00Z\"}" &&
	kubectl label node "$A" "kmm.node.kubernetes.io/$NS.$MOD.ready=" "kmm.node.kubernetes.io/$NS.$MOD.device-plugin-target=" \
		"kmm.node.kubernetes.io/$NS.$MOD.device-plugin-ready=" >>"$T/out" 2>&1 &&
	kubectl label node "$B" "kmm.node.kubernetes.io/$NS.$MOD.device-plugin-target=" >>"$T/out" 2>&1
rc=$?
check "NMCs with spec and status (bootID of the node), node labels" '[ $rc -eq 0 ]'

# The loader pod on B: the kubelet (kwok) keeps it Pending with ImagePullBackOff.
# (Pods need the namespace's default ServiceAccount, created asynchronously.)
for _ in $(seq 50); do
	kubectl get serviceaccount default -n "$NS" >/dev/null 2>&1 && break
	sleep 0.2
done
cat <<Y | kubectl apply -f - >"$T/out" 2>&1
apiVersion: v1
kind: Pod
metadata:
  name: kmm-worker-$B-$MOD
  namespace: $NS
  labels: {kmm.node.kubernetes.io/module.name: $MOD, kmm.node.kubernetes.io/worker-action: Load}
  annotations: {kmm.testenv/outcome: pending}
spec:
  nodeName: $B
  restartPolicy: OnFailure
  containers: [{name: worker, image: 'reg.local/kmm-worker:test'}]
---
apiVersion: v1
kind: Event
metadata: {name: $MOD.status-test, namespace: $NS}
involvedObject: {apiVersion: kmm.sigs.x-k8s.io/v1beta1, kind: Module, namespace: $NS, name: $MOD}
type: Warning
reason: ImageBuildPending
message: image $IMG515 is being built
count: 3
lastTimestamp: "2026-12-07T10:00:00Z"
firstTimestamp: "2026-12-07T09:00:00Z"
source: {component: kmm}
Y
rc=$?
pending=1
for _ in $(seq 50); do
	kubectl get pod "kmm-worker-$B-$MOD" -n "$NS" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null | grep -q ImagePullBackOff && { pending=0; break; }
	sleep 0.2
done
check "a worker pod stuck pulling (Pending, ImagePullBackOff) and a Module Event" '[ $rc -eq 0 ] && [ $pending -eq 0 ]'

"$K" status --kubeconfig "$KUBECONFIG" -n "$NS" -o json >"$T/s.json" 2>"$T/out"
rc=$?
check "status -o json reads the cluster" '[ $rc -eq 0 ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$T/s.json"'
cp "$T/s.json" "$T/out"
py() { python3 - "$T/s.json" "$A" "$B" "$C" "$D" "$BOOT_A" <<PY
import json, sys
doc = json.load(open(sys.argv[1]))
A, B, C, D, BOOT_A = sys.argv[2:7]
[m] = doc["modules"]
nodes = {x["node"]: x for x in m["nodes"]}
$1
PY
}
check "node A: Loaded, version/image/kernel/since and the current boot, device plugin Ready" 'py "
a = nodes[A]
assert a[\"state\"] == \"Loaded\" and a[\"reason\"] is None, a
assert a[\"loaded\"] == {\"version\": None, \"image\": \"$IMG61\", \"kernel\": \"6.1.0-18-amd64\", \"since\": \"2026-12-07T09:00:00Z\", \"bootId\": BOOT_A, \"currentBoot\": True}, a
assert a[\"labels\"][\"ready\"] and a[\"devicePlugin\"][\"state\"] == \"Ready\", a
"'
check "node B: Loading, the worker pod Pending with ImagePullBackOff named in the reason" 'py "
b = nodes[B]
assert b[\"state\"] == \"Loading\" and b[\"loaded\"] is None and b[\"wanted\"][\"configured\"], b
w = b[\"workerPod\"]
assert w[\"name\"] == \"kmm-worker-\" + B + \"-$MOD\" and w[\"action\"] == \"Load\" and w[\"phase\"] == \"Pending\", w
assert \"ImagePullBackOff\" in w[\"detail\"] and \"ImagePullBackOff\" in b[\"reason\"], b
assert b[\"devicePlugin\"][\"state\"] == \"WaitingForModule\", b
"'
check "node C: Building (the MIC says NeedsBuilding for the GKE image)" 'py "
c = nodes[C]
assert c[\"state\"] == \"Building\" and c[\"wanted\"][\"image\"] == \"$IMG515\", c
assert c[\"wanted\"][\"imageState\"] == \"NeedsBuilding\" and not c[\"wanted\"][\"configured\"], c
"'
check "node D (cordoned, still loaded): Unloading" 'py "
d = nodes[D]
assert d[\"state\"] == \"Unloading\" and d[\"loaded\"][\"currentBoot\"], d
"'
check "Module counts, MIC images and the Module Event" 'py "
assert m[\"moduleLoader\"] == {\"nodesMatchingSelector\": 4, \"desired\": 3, \"available\": 1}, m
assert m[\"devicePlugin\"][\"available\"] == 1, m
assert {i[\"image\"]: i[\"state\"] for i in m[\"images\"]} == {\"$IMG61\": \"Exists\", \"$IMG515\": \"NeedsBuilding\"}, m
[e] = m[\"events\"]
assert e[\"reason\"] == \"ImageBuildPending\" and e[\"type\"] == \"Warning\" and e[\"count\"] == 3, e
"'

"$K" status --kubeconfig "$KUBECONFIG" -n "$NS" >"$T/out" 2>&1
rc=$?
check "status (table): module and node tables, reasons below" '[ $rc -eq 0 ] && grep -q "^MODULE  *VERSION  *LOADED  *DESIRED  *DEVICE-PLUGINS" "$T/out" &&
	grep -q "^$NS/$MOD  *$A  *Loaded  *-  *$IMG61  *2026-12-07T09:00:00Z  *current  *Ready\$" "$T/out" &&
	grep -q "^$NS/$MOD  *$C  *Building " "$T/out" &&
	grep -q "^$NS/$MOD on $B: Loading: worker pod kmm-worker-$B-$MOD (Load) Pending: container worker ImagePullBackOff" "$T/out"'
"$K" status --kubeconfig "$KUBECONFIG" -n "$NS" -o yaml >"$T/out" 2>&1
rc=$?
check "status -o yaml: the same report in YAML" '[ $rc -eq 0 ] && grep -q "^modules:" "$T/out" && grep -q "^  name: $MOD\$" "$T/out" &&
	grep -q "^    state: Building\$" "$T/out" && grep -q "^      currentBoot: true\$" "$T/out" && grep -q "^      phase: Pending\$" "$T/out"'
"$K" status "$MOD" --kubeconfig "$KUBECONFIG" -n "$NS" --node "$B" -o json >"$T/out" 2>&1
rc=$?
check "a Module name and --node keep one row" '[ $rc -eq 0 ] && python3 -c "
import json, sys
[m] = json.load(open(sys.argv[1]))[\"modules\"]
assert [x[\"node\"] for x in m[\"nodes\"]] == [sys.argv[2]], m
" "$T/out" "$B"'
"$K" status nosuch --kubeconfig "$KUBECONFIG" -n "$NS" >"$T/out" 2>&1
rc=$?
check "an unknown Module name exits 1 and says so" '[ $rc -eq 1 ] && grep -q "Module nosuch not found in namespace $NS" "$T/out"'

# A reboot of A (new bootID): the module loaded in the earlier boot is loaded again.
"$TE" nodes reboot "$A" --down-for 1 >"$T/out" 2>&1
rc=$?
check "node A rebooted (new bootID)" '[ $rc -eq 0 ] && [ "$(kubectl get node "$A" -o jsonpath="{.status.nodeInfo.bootID}")" != "$BOOT_A" ]'
"$K" status "$MOD" --kubeconfig "$KUBECONFIG" -n "$NS" --node "$A" >"$T/out" 2>&1
rc=$?
check "after the reboot: Reloading, BOOT earlier, the two boots named" '[ $rc -eq 0 ] && grep -q "^$NS/$MOD  *$A  *Reloading .* earlier " "$T/out" &&
	grep -q "the node rebooted (boot .*) since the load in boot $BOOT_A" "$T/out"'
exit $fail
