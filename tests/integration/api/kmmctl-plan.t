#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kmmctl plan --kubeconfig against the testenv: simulated nodes with their
# kernels, labels and taints, and Modules read from the cluster. TAP on stdout.
set -u
SRC=${KMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
BUILD=${KMM_BUILD_DIR:-$SRC/build/dev}
K=$BUILD/src/cli/kmmctl
TE=$SRC/tests/env/testenv
ID=$$
NS=kmm-api-plan-$ID
N1=kmm-api-plan-$ID-a
N2=kmm-api-plan-$ID-b
N3=kmm-api-plan-$ID-c
T=$(mktemp -d)
. "$SRC/tests/integration/api/tap.sh"
cleanup() {
	"$TE" nodes remove "$N1" "$N2" "$N3" >/dev/null 2>&1
	kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

echo "1..7"
if [ -z "${KUBECONFIG:-}" ] || [ ! -x "$K" ]; then
	echo "# KUBECONFIG unset or $K not built: run under tests/run"
	exit 1
fi
kubectl apply -k "$SRC/deploy/crd" >/dev/null 2>&1
"$TE" nodes add "$N1" --kernel 6.1.0-18-amd64 --label "kmm-api-plan=$ID" >"$T/out" 2>&1 &&
	"$TE" nodes add "$N2" --kernel 5.15.0-1051-gke+ --label "kmm-api-plan=$ID" >>"$T/out" 2>&1 &&
	"$TE" nodes add "$N3" --kernel 6.1.0-18-amd64 --label "kmm-api-plan=$ID" >>"$T/out" 2>&1 &&
	"$TE" nodes cordon "$N3" >>"$T/out" 2>&1
rc=$?
check "three simulated nodes (one cordoned)" '[ $rc -eq 0 ]'
kubectl create namespace "$NS" >/dev/null 2>&1
cat <<Y | kubectl apply -f - >"$T/out" 2>&1
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: plan-me, namespace: $NS}
spec:
  selector: {kmm-api-plan: "$ID"}
  moduleLoader:
    container:
      modprobe: {moduleName: kmm_ci_a}
      kernelMappings:
      - {literal: 6.1.0-18-amd64, containerImage: 'reg.local/\$MOD_NAME:\${KERNEL_FULL_VERSION}'}
      - {regexp: '-gke$', containerImage: 'reg.local/gke:\${KERNEL_XYZ}'}
Y
rc=$?
check "Module created in the cluster" '[ $rc -eq 0 ]'
"$K" plan --kubeconfig "$KUBECONFIG" -n "$NS" -o json >"$T/plan.json" 2>"$T/out"
rc=$?
check "plan --kubeconfig reads Modules and Nodes from the cluster" '[ $rc -eq 0 ]'
cp "$T/plan.json" "$T/out"
check "node with a literal-matching kernel gets the templated image" 'python3 - "$T/plan.json" "$N1" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
a=r[sys.argv[2]]
assert a["module"].endswith("/plan-me") and a["targeted"] and a["mapping"]==0, a
assert a["containerImage"]=="reg.local/plan-me:6.1.0-18-amd64", a
assert a["commands"]["load"]=="modprobe -vd /tmp/opt kmm_ci_a", a
PY'
check "GKE kernel: + trimmed, regexp mapping" 'python3 - "$T/plan.json" "$N2" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
b=r[sys.argv[2]]
assert b["mapping"]==1 and b["containerImage"]=="reg.local/gke:5.15.0", b
PY'
check "cordoned node is not targeted" 'python3 - "$T/plan.json" "$N3" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
c=r[sys.argv[2]]
assert not c["targeted"] and "unschedulable" in c["reason"], c
PY'
"$K" plan --kubeconfig "$KUBECONFIG" -f "$SRC/deploy/samples/module.yaml" >"$T/out" 2>&1
rc=$?
check "plan with -f and the cluster's nodes prints a table" '[ $rc -eq 0 ] && grep -q "^MODULE" "$T/out" && grep -q "$N1" "$T/out"'
exit $fail
