#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kmmctl validate/plan on sample manifests; TAP output.
# Usage: test-kmmctl.sh KMMCTL SOURCE_DIR
K=$1
SRC=$2
D=$SRC/tests/unit/cli/data
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; sed 's/^/# /' "$T/out" 2>/dev/null | head -40; }
check() { # name, then a shell condition
	name=$1; shift
	if eval "$@"; then ok "$name"; else nok "$name"; fi
}

echo "1..32"
"$K" validate -f "$SRC/deploy/samples/module.yaml" >"$T/out" 2>&1; rc=$?
check "sample module.yaml is valid" '[ $rc -eq 0 ] && grep -q "^valid   .*Module default/kmm-ci" "$T/out"'
args=
for f in "$SRC"/deploy/samples/*.yaml; do args="$args -f $f"; done
# shellcheck disable=SC2086 # one word per argument (paths without spaces)
"$K" validate -q $args >"$T/out" 2>&1; rc=$?
check "every sample is valid" '[ $rc -eq 0 ]'
"$K" validate -f "$D/invalid.yaml" >"$T/out" 2>&1; rc=$?
check "invalid file exits 1" '[ $rc -eq 1 ]'
check "regexp back-reference reported with its path" 'grep -q "kernelMappings\[0\].regexp: Invalid value: \"(a)\\\\1\": unsupported back-reference" "$T/out"'
check "missing tag reported" 'grep -q "kernelMappings\[0\].containerImage: Invalid value: \"x\": must explicitly set a tag or digest" "$T/out"'
check "loading order reported (all violations by default)" 'grep -q "modulesLoadingOrder\[0\]" "$T/out"'
check "unknown field reported with path" 'grep -q "Module typo: spec.moduleLoadr: unknown field" "$T/out"'
check "non-kmm kinds are skipped" 'grep -q "skipped .*ConfigMap" "$T/out"'
check "default namespace used when absent" 'grep -q "Module default/bad" "$T/out"'
"$K" validate -f "$SRC/deploy/samples/hub/managedclustermodule.yaml" >"$T/out" 2>&1; rc=$?
check "the hub's sample ManagedClusterModule is valid" '[ $rc -eq 0 ] && grep -q "^valid   .*ManagedClusterModule kmm-ci" "$T/out"'
"$K" validate -f "$D/mcm-invalid.yaml" >"$T/out" 2>&1; rc=$?
check "ManagedClusterModules checked with spec.moduleSpec paths" '[ $rc -eq 1 ] && grep -q "ManagedClusterModule no-tag: spec.moduleSpec.moduleLoader.container.kernelMappings\[0\].containerImage: Invalid value: \"x\"" "$T/out" && grep -q "no-spoke-namespace: spec.spokeNamespace: Required value" "$T/out"'
"$K" validate --first -f "$D/invalid.yaml" >"$T/out" 2>&1
check "--first reports one violation per object" '! grep -q "modulesLoadingOrder" "$T/out" && grep -q "back-reference" "$T/out"'
"$K" validate -f "$D/args-one-side.yaml" >"$T/out" 2>&1; rc=$?
check "args.load alone and args.unload alone are valid" '[ $rc -eq 1 ] && grep -q "^valid   .*Module kmm/load-only" "$T/out" && grep -q "^valid   .*Module kmm/unload-only" "$T/out"'
check "an args list given empty is invalid (minItems 1)" 'grep -q "Module empty-list: spec.moduleLoader.container.modprobe.args.load: must have at least 1 item" "$T/out"'
"$K" validate -f - <"$SRC/deploy/samples/module.yaml" >"$T/out" 2>&1; rc=$?
check "stdin input" '[ $rc -eq 0 ] && grep -q "<stdin>" "$T/out"'
"$K" validate >"$T/out" 2>&1; rc=$?
check "no -f is a usage error (2)" '[ $rc -eq 2 ]'
"$K" validate -f /nonexistent.yaml >"$T/out" 2>&1; rc=$?
check "missing file fails naming it" '[ $rc -eq 1 ] && grep -q nonexistent "$T/out"'

"$K" plan -f "$SRC/deploy/samples/module.yaml" -k 6.1.0-18-amd64 >"$T/out" 2>&1; rc=$?
check "plan table for a kernel" '[ $rc -eq 0 ] && grep -q "kmm-ci-a:6.1.0-18-amd64" "$T/out" && grep -q "load:     modprobe -vd /tmp/opt kmm_ci_a" "$T/out"'
"$K" plan -f "$D/build-sign.yaml" --nodes "$D/nodes.yaml" -o json >"$T/out" 2>&1; rc=$?
check "plan json against Node objects" '[ $rc -eq 0 ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$T/out"'
check "tolerated taint: n1 targeted with literal mapping" 'python3 - "$T/out" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
n1=r["n1"]
assert n1["targeted"] and n1["mapping"]==0, n1
assert n1["containerImage"]=="reg.local/kmm/bs:6.1.0-18-amd64"
args={a["name"]:a["value"] for a in n1["build"]["buildArgs"]}
assert args["KERNEL_VERSION"]=="6.1.0-18-amd64" and args["FLAG"]=="true" and args["MOD_NAMESPACE"]=="kmm", args
assert n1["sign"]["filesToSign"]==["/opt/lib/modules/6.1.0-18-amd64/kmm_ci_a.ko"]
assert n1["sign"]["unsignedImage"]==n1["containerImage"]
assert n1["commands"]["load"]=="modprobe -vd /tmp/opt kmm_ci_a debug=1"
assert n1["commands"]["inTreeRemoval"] is None
PY'
check "cordoned node not targeted" 'python3 - "$T/out" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
assert not r["n2"]["targeted"] and "unschedulable" in r["n2"]["reason"], r["n2"]
PY'
check "selector mismatch not targeted" 'python3 - "$T/out" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
assert not r["n3"]["targeted"] and "selector" in r["n3"]["reason"]
PY'
check "trailing + trimmed, regexp mapping, KERNEL_XYZ" 'python3 - "$T/out" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
assert r["n4"]["mapping"]==1 and r["n4"]["containerImage"]=="reg.local/old:5.15.0", r["n4"]
assert r["n4"]["workerConfig"]["kernelVersion"]=="5.15.0-1051-gke"
PY'
check "no mapping: not targeted" 'python3 - "$T/out" <<PY
import json,sys
r={x["node"]:x for x in json.load(open(sys.argv[1]))}
assert not r["n5"]["targeted"] and "no kernel mapping" in r["n5"]["reason"]
PY'
"$K" plan -f "$D/build-sign.yaml" -k 6.1.0-18-amd64 -o yaml >"$T/out" 2>&1; rc=$?
check "plan yaml keeps string types" '[ $rc -eq 0 ] && grep -q "value: \"true\"" "$T/out" && grep -q "^  targeted: true" "$T/out"'
head -20 "$D/args-one-side.yaml" | "$K" plan -f - -k 6.1.0-18-amd64 -o json >"$T/out" 2>&1; rc=$?
check "plan: the side without an args list gets no flags" '[ $rc -eq 0 ] && python3 - "$T/out" <<PY
import json,sys
r={x["module"]:x["commands"] for x in json.load(open(sys.argv[1]))}
assert r["kmm/load-only"]["load"]=="modprobe -vd /tmp/opt --first-time kmm_ci_a", r
assert r["kmm/load-only"]["unload"]=="modprobe -rvd /tmp/opt kmm_ci_a", r
assert r["kmm/unload-only"]["load"]=="modprobe -vd /tmp/opt kmm_ci_a", r
assert r["kmm/unload-only"]["unload"]=="modprobe -rvd /tmp/opt --remove-holders kmm_ci_a", r
PY'
"$K" plan -f "$SRC/deploy/samples/module.yaml" -k 6.1.0-18-amd64 -l a=b >"$T/out" 2>&1
check "--node-labels not matching the selector" 'grep -q "skipped:  selector kmm.example.com/demo=true does not match" "$T/out"'
"$K" plan -f "$SRC/deploy/samples/module.yaml" >"$T/out" 2>&1; rc=$?
check "plan without targets is a usage error" '[ $rc -eq 2 ]'
"$K" plan -f "$SRC/deploy/samples/module.yaml" --kubeconfig /nonexistent-kubeconfig >"$T/out" 2>&1; rc=$?
check "--kubeconfig to a missing file fails naming it" '[ $rc -eq 1 ] && grep -q "/nonexistent-kubeconfig" "$T/out"'
"$K" status --kubeconfig /nonexistent-kubeconfig >"$T/out" 2>&1; rc=$?
check "status --kubeconfig to a missing file fails naming it" '[ $rc -eq 1 ] && grep -q "/nonexistent-kubeconfig" "$T/out"'
"$K" status a b >"$T/out" 2>&1; rc=$?
check "status with two Module names is a usage error" '[ $rc -eq 2 ] && grep -q "unexpected argument .b." "$T/out"'
"$K" status -o wide >"$T/out" 2>&1; rc=$?
check "status -o with an unknown format is a usage error" '[ $rc -eq 2 ] && grep -q "table, json or yaml" "$T/out"'
exit $fail
