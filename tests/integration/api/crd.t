#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The kmm CRDs against the real apiserver of the testenv: they install, the
# samples apply, defaults and printer columns are there, the schema and the
# CEL rule reject what upstream's CRDs reject. TAP on stdout.
# Needs: KUBECONFIG (testenv env), kubectl, KMM_SOURCE_DIR.
set -u
SRC=${KMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
NS=kmm-api-crd-$$
T=$(mktemp -d)
. "$SRC/tests/integration/api/tap.sh"
cleanup() {
	kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
	kubectl delete nmc kmm-api-crd-node-$$ >/dev/null 2>&1
	kubectl delete pfv kmm-api-crd-pfv-$$ >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT

echo "1..27"
if ! command -v kubectl >/dev/null 2>&1 || [ -z "${KUBECONFIG:-}" ]; then
	echo "# kubectl or KUBECONFIG missing: run under tests/run (testenv env)"
	exit 1
fi

kubectl apply -k "$SRC/deploy/crd" >"$T/out" 2>&1
rc=$?
check "CRDs install (structural schemas accepted)" '[ $rc -eq 0 ]'
for c in modules nodemodulesconfigs moduleimagesconfigs modulebuildsignconfigs preflightvalidations; do
	kubectl wait --for=condition=Established "crd/$c.kmm.sigs.x-k8s.io" --timeout=60s >"$T/out" 2>&1
rc=$?
	check "crd $c established" '[ $rc -eq 0 ]'
done
kubectl get crd preflightvalidations.kmm.sigs.x-k8s.io -o jsonpath='{range .spec.versions[*]}{.name}:{.served}:{.storage}:{.deprecated} {end}' >"$T/out" 2>&1
rc=$?
check "PFV serves v1beta1 (deprecated) and stores v1beta2" 'grep -q "v1beta1:true:false:true v1beta2:true:true:" "$T/out"'
kubectl get crd nodemodulesconfigs.kmm.sigs.x-k8s.io -o jsonpath='{.spec.scope} {.spec.names.shortNames}' >"$T/out" 2>&1
rc=$?
check "NMC is cluster-scoped with short name nmc" 'grep -q "Cluster \[\"nmc\"\]" "$T/out"'

kubectl create namespace "$NS" >/dev/null
sed "s|kmm-registry.local:5000|${KMM_TESTENV_REGISTRY:-127.0.0.1:5000}|; s|namespace: default|namespace: $NS|" \
	"$SRC/deploy/samples/module.yaml" | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "sample Module applies verbatim (registry rewritten)" '[ $rc -eq 0 ]'
ok_all=0
: >"$T/all"
for f in "$SRC"/deploy/samples/*.yaml; do
	sed "s|kmm-registry.local:5000|${KMM_TESTENV_REGISTRY:-127.0.0.1:5000}|; s|namespace: default|namespace: $NS|" "$f" |
		kubectl apply --dry-run=server -f - >>"$T/all" 2>&1 || ok_all=1
done
cp "$T/all" "$T/out"
check "every sample is accepted by the apiserver (server-side dry run)" '[ $ok_all -eq 0 ]'
kubectl get module kmm-ci -n "$NS" -o jsonpath='{.spec.moduleLoader.container.modprobe.dirName}' >"$T/out" 2>&1
rc=$?
check "dirName defaults to /opt" '[ "$(cat "$T/out")" = /opt ]'
kubectl patch module kmm-ci -n "$NS" --subresource=status --type=merge \
	-p '{"status":{"moduleLoader":{"availableNumber":2,"desiredNumber":3,"nodesMatchingSelectorNumber":4},"devicePlugin":{"availableNumber":1}}}' >"$T/out" 2>&1
rc=$?
check "status subresource accepts the upstream status shape" '[ $rc -eq 0 ]'
kubectl get module -n "$NS" >"$T/out" 2>&1
rc=$?
check "kubectl get module shows LOADED DESIRED DEVICE-PLUGINS AGE" 'head -1 "$T/out" | grep -q "NAME *LOADED *DESIRED *DEVICE-PLUGINS *AGE" && grep -q "kmm-ci *2 *3 *1" "$T/out"'
kubectl get module -n "$NS" -o wide >"$T/out" 2>&1
rc=$?
check "-o wide adds MATCHING and DRA" 'head -1 "$T/out" | grep -q "MATCHING.*DRA" && grep -q "kmm-ci *2 *3 *4 *1" "$T/out"'
kubectl patch module kmm-ci -n "$NS" --subresource=status --type=merge \
	-p '{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Loaded","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}' >"$T/out" 2>&1
rc=$?
check "status.conditions accepted (kmm addition)" '[ $rc -eq 0 ]'

cat >"$T/both.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: both, namespace: $NS}
spec:
  selector: {}
  devicePlugin: {container: {image: 'dp:1'}}
  dra: {container: {image: 'd:1'}, driverName: d.x}
Y
kubectl apply -f "$T/both.yaml" >"$T/out" 2>&1
rc=$?
check "CEL rule rejects dra + devicePlugin" '[ $rc -ne 0 ] && grep -q "spec.dra and spec.devicePlugin are mutually exclusive" "$T/out"'
cat >"$T/nomap.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: nomap, namespace: $NS}
spec:
  selector: {}
  moduleLoader: {container: {modprobe: {moduleName: a}, kernelMappings: []}}
Y
kubectl apply -f "$T/nomap.yaml" >"$T/out" 2>&1
rc=$?
check "kernelMappings minItems 1" '[ $rc -ne 0 ] && grep -q "kernelMappings" "$T/out"'
cat >"$T/noimg.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: noimg, namespace: $NS}
spec:
  selector: {}
  moduleLoader: {container: {modprobe: {moduleName: a}, kernelMappings: [{literal: x}]}}
Y
kubectl apply -f "$T/noimg.yaml" >"$T/out" 2>&1
rc=$?
check "kernelMappings[].containerImage key required" '[ $rc -ne 0 ] && grep -q "containerImage: Required value" "$T/out"'
cat >"$T/nosel.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: nosel, namespace: $NS}
spec:
  devicePlugin: {container: {image: 'dp:1'}}
Y
kubectl apply -f "$T/nosel.yaml" >"$T/out" 2>&1
rc=$?
check "spec.selector required" '[ $rc -ne 0 ] && grep -q "selector: Required value" "$T/out"'
cat >"$T/dp.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: dp-only, namespace: $NS}
spec:
  selector: {feature.node.kubernetes.io/pci-10de.present: "true"}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  devicePlugin:
    container:
      image: 'dp:1'
      env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
      resources: {limits: {cpu: 100m}}
      volumeMounts: [{name: dev, mountPath: /dev}]
    volumes: [{name: dev, hostPath: {path: /dev}}]
Y
kubectl apply -f "$T/dp.yaml" >"$T/out" 2>&1 && kubectl get module dp-only -n "$NS" -o jsonpath='{.spec.devicePlugin.container.env[0].valueFrom.fieldRef.fieldPath}' >"$T/out" 2>&1
rc=$?
check "device-plugin-only Module keeps embedded core fields" 'grep -q spec.nodeName "$T/out"'

# modprobe.args: upstream requires neither list (omitempty); a list given needs an item.
args_module() { # name args
	cat <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: $1, namespace: $NS}
spec:
  selector: {}
  moduleLoader: {container: {modprobe: {moduleName: a, args: $2}, kernelMappings: [{literal: x, containerImage: 'i:1'}]}}
Y
}
args_module args-load '{load: [--first-time]}' | kubectl apply -f - >"$T/out" 2>&1 &&
	kubectl get module args-load -n "$NS" -o jsonpath='{.spec.moduleLoader.container.modprobe.args}' >"$T/out" 2>&1
rc=$?
check "modprobe.args.load alone is accepted and stored as given" '[ $rc -eq 0 ] && [ "$(cat "$T/out")" = "{\"load\":[\"--first-time\"]}" ]'
args_module args-unload '{unload: [--remove-holders]}' | kubectl apply -f - >"$T/out" 2>&1 &&
	kubectl get module args-unload -n "$NS" -o jsonpath='{.spec.moduleLoader.container.modprobe.args}' >"$T/out" 2>&1
rc=$?
check "modprobe.args.unload alone is accepted and stored as given" '[ $rc -eq 0 ] && [ "$(cat "$T/out")" = "{\"unload\":[\"--remove-holders\"]}" ]'
args_module args-empty '{load: []}' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "an empty modprobe.args.load is rejected (minItems 1)" '[ $rc -ne 0 ] && grep -q "args.load: Invalid value: 0: spec.moduleLoader.container.modprobe.args.load in body should have at least 1 items" "$T/out"'

cat >"$T/nmc.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: NodeModulesConfig
metadata: {name: kmm-api-crd-node-$$}
spec:
  modules:
  - {name: kmm-ci, namespace: $NS, config: {kernelVersion: 6.1.0-18-amd64, containerImage: 'r/i:1', modprobe: {moduleName: kmm_ci_a}}}
Y
kubectl apply -f "$T/nmc.yaml" >"$T/out" 2>&1
rc=$?
kubectl get nmc kmm-api-crd-node-$$ -o jsonpath='{.spec.modules[0].config.imagePullPolicy}' >"$T/out" 2>&1
rc=$?
check "NMC config imagePullPolicy defaults to IfNotPresent" '[ "$(cat "$T/out")" = IfNotPresent ]'
kubectl get nmc kmm-api-crd-node-$$ >"$T/out" 2>&1
rc=$?
check "kubectl get nmc shows CONFIGURED modules" 'head -1 "$T/out" | grep -q "CONFIGURED *LOADED" && grep -q "kmm-api-crd-node-$$ *kmm-ci" "$T/out"'
sed 's|modprobe: {moduleName: kmm_ci_a}|modprobe: {moduleName: kmm_ci_a, args: {unload: [--remove-holders]}}|' "$T/nmc.yaml" |
	kubectl apply -f - >"$T/out" 2>&1 &&
	kubectl get nmc kmm-api-crd-node-$$ -o jsonpath='{.spec.modules[0].config.modprobe.args}' >"$T/out" 2>&1
rc=$?
check "NMC config with modprobe.args.unload alone is accepted" '[ $rc -eq 0 ] && [ "$(cat "$T/out")" = "{\"unload\":[\"--remove-holders\"]}" ]'

cat >"$T/pfv.yaml" <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta2
kind: PreflightValidation
metadata: {name: kmm-api-crd-pfv-$$}
spec: {kernelVersion: 6.1.0-18-amd64, pushBuiltImage: true}
Y
kubectl apply -f "$T/pfv.yaml" >"$T/out" 2>&1
rc=$?
check "PreflightValidation v1beta2 applies" '[ $rc -eq 0 ]'
exit $fail
