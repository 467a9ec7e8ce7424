#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kmm-webhook through the real apiserver of the testenv: Module and
# PreflightValidation validation, the namespace-deletion guard, the
# PreflightValidation conversion webhook, and certificate rotation without a
# restart. The webhook configuration is scoped to this suite's namespaces and
# labelled objects so the shared control plane is not affected. TAP on stdout.
set -u
SRC=${KMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
BUILD=${KMM_BUILD_DIR:-$SRC/build/dev}
WH=$BUILD/src/webhook/kmm-webhook
ID=$$
NS=kmm-api-wh-$ID
NSG=kmm-api-whguard-$ID
VWC=kmm-api-webhook-test-$ID
CRD=preflightvalidations.kmm.sigs.x-k8s.io
T=$(mktemp -d)
WPID=
TAP_DIAG_LINES=20
. "$SRC/tests/integration/api/tap.sh"
ORIG_CONVERSION='{"spec":{"conversion":{"strategy":"Webhook","webhook":{"conversionReviewVersions":["v1"],"clientConfig":{"url":null,"caBundle":null,"service":{"name":"kmm-operator-webhook-service","namespace":"kmm-operator-system","path":"/convert"}}}}}}'
cleanup() {
	kubectl delete validatingwebhookconfiguration "$VWC" >/dev/null 2>&1
	kubectl label namespace "$NSG" kmm.node.k8s.io/contains-modules- >/dev/null 2>&1
	kubectl delete namespace "$NS" "$NSG" --wait=false >/dev/null 2>&1
	kubectl delete pfv -l "kmm-api-test=$ID" >/dev/null 2>&1
	kubectl patch crd "$CRD" --type=merge -p "$ORIG_CONVERSION" >/dev/null 2>&1
	# The patch's field manager now owns clientConfig.service (with the port the
	# apiserver defaulted); a later server-side apply of an install whose conversion
	# uses a url could not remove them, and would be refused (url and service). Drop
	# every manager's claim, then apply the CRD as an install does, port included,
	# so that kubectl's apply manager alone owns the service fields.
	kubectl patch crd "$CRD" --type=json \
		-p '[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]' >/dev/null 2>&1
	sed 's|^\( *\)path: /convert$|&\n\1port: 443|' \
		"$SRC/deploy/crd/kmm.sigs.x-k8s.io_preflightvalidations.yaml" |
		kubectl apply --server-side --force-conflicts -f - >/dev/null 2>&1
	[ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

# CA and serving certificate for 127.0.0.1 into directory $1 (CA in $1/ca.crt).
mkcerts() {
	mkdir -p "$1"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/ca.key" -out "$1/ca.crt" -days 2 \
		-subj "/CN=kmm-webhook-test-ca-$2" >/dev/null 2>&1 &&
	openssl req -newkey rsa:2048 -nodes -keyout "$1/tls.key.new" -out "$1/tls.csr" \
		-subj "/CN=127.0.0.1" >/dev/null 2>&1 &&
	printf 'subjectAltName=IP:127.0.0.1\n' >"$1/ext" &&
	openssl x509 -req -in "$1/tls.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial \
		-out "$1/tls.crt.new" -days 2 -extfile "$1/ext" >/dev/null 2>&1
}

echo "1..25"
for tool in kubectl openssl curl base64; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "# missing $tool"
		exit 1
	fi
done
if [ -z "${KUBECONFIG:-}" ] || [ ! -x "$WH" ]; then
	echo "# KUBECONFIG unset or $WH not built: run under tests/run"
	exit 1
fi

mkcerts "$T/ca1" 1 && mkdir -p "$T/serving" && cp "$T/ca1/tls.crt.new" "$T/serving/tls.crt" &&
	cp "$T/ca1/tls.key.new" "$T/serving/tls.key"
check "test CA and serving certificate created" '[ -s "$T/serving/tls.crt" ]'

"$WH" --bind-address 127.0.0.1:0 --cert-dir "$T/serving" --cert-reload-interval 1 \
	--enable-module --enable-namespace --enable-preflightvalidation \
	>"$T/wh.log" 2>&1 &
WPID=$!
PORT=
for _ in $(seq 50); do
	PORT=$(sed -n 's/.*webhook server listening port=\([0-9]*\).*/\1/p' "$T/wh.log")
	[ -n "$PORT" ] && break
	sleep 0.1
done
cp "$T/wh.log" "$T/out"
check "kmm-webhook asked the apiserver its version (DRA gate)" 'grep -q "kube-minor=[1-9][0-9]" "$T/wh.log"'
check "kmm-webhook serves HTTPS" '[ -n "$PORT" ] && curl -sf --cacert "$T/ca1/ca.crt" "https://127.0.0.1:$PORT/healthz" >/dev/null'
[ -n "$PORT" ] || exit 1
URL=https://127.0.0.1:$PORT

kubectl apply -k "$SRC/deploy/crd" >/dev/null 2>&1
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$NSG" >/dev/null

write_vwc() { # $1 = CA file
	CA=$(base64 -w0 "$1")
	cat >"$T/vwc.yaml" <<Y
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: $VWC}
webhooks:
- name: vmodule.kmm-api-test.io
  admissionReviewVersions: [v1]
  clientConfig: {url: "$URL/validate-kmm-sigs-x-k8s-io-v1beta1-module", caBundle: "$CA"}
  failurePolicy: Fail
  sideEffects: None
  timeoutSeconds: 10
  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: $NS}}
  rules: [{apiGroups: [kmm.sigs.x-k8s.io], apiVersions: [v1beta1], operations: [CREATE, UPDATE], resources: [modules]}]
- name: vpfv.kmm-api-test.io
  admissionReviewVersions: [v1]
  clientConfig: {url: "$URL/validate-kmm-sigs-x-k8s-io-v1beta2-preflightvalidation", caBundle: "$CA"}
  failurePolicy: Fail
  sideEffects: None
  timeoutSeconds: 10
  objectSelector: {matchLabels: {kmm-api-test: "$ID"}}
  rules: [{apiGroups: [kmm.sigs.x-k8s.io], apiVersions: [v1beta2], operations: [CREATE, UPDATE], resources: [preflightvalidations]}]
- name: vns.kmm-api-test.io
  admissionReviewVersions: [v1]
  clientConfig: {url: "$URL/validate--v1-namespace", caBundle: "$CA"}
  failurePolicy: Fail
  sideEffects: None
  timeoutSeconds: 10
  namespaceSelector:
    matchExpressions:
    - {key: kmm.node.k8s.io/contains-modules, operator: Exists}
    - {key: kubernetes.io/metadata.name, operator: In, values: [$NSG]}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [DELETE], resources: [namespaces]}]
Y
	kubectl apply -f "$T/vwc.yaml" >"$T/out" 2>&1
rc=$?
}
write_vwc "$T/ca1/ca.crt"
check "ValidatingWebhookConfiguration installed" '[ $rc -eq 0 ]'

module() { # name image [extra container lines]
	cat <<Y
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: $1, namespace: $NS}
spec:
  selector: {kubernetes.io/hostname: node1}
  moduleLoader:
    container:
      modprobe: {moduleName: kmm_ci_a}
      kernelMappings: [{regexp: '$3', containerImage: '$2'}]
${4:-}
Y
}

# The apiserver picks webhook configurations up asynchronously: retry until denied.
denied=1
for _ in $(seq 60); do
	module notag registry.local/kmod '^.+$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
	if grep -q "denied the request" "$T/out"; then denied=0; break; fi
	sleep 0.5
done
check "invalid Module (image without tag) is rejected by the webhook" '[ $denied -eq 0 ] && grep -q "kernelMappings\[0\].containerImage: Invalid value: \"registry.local/kmod\": must explicitly set a tag or digest" "$T/out"'
module bad-regexp 'r/i:1' '^(a)\1$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "back-reference regexp is rejected with its path" 'grep -q "denied the request: spec.moduleLoader.container.kernelMappings\[0\].regexp" "$T/out"'
module aaaaaaaaaaaaaaaaaaaaaaaaaaaaa 'r/i:1' '^.+$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "name+namespace over 41 characters is rejected" 'grep -q "must not exceed 41 characters" "$T/out"'
module good 'r/i:${KERNEL_FULL_VERSION}' '^.+$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "valid Module is accepted" '[ $rc -eq 0 ] && kubectl get module good -n "$NS" >/dev/null 2>&1'
# modprobe.args with one list only: upstream's CRD and webhook accept it.
module args-load 'r/i:1' '^.+$' | sed 's|{moduleName: kmm_ci_a}|{moduleName: kmm_ci_a, args: {load: [--first-time]}}|' |
	kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "Module with modprobe.args.load alone passes the webhook" '[ $rc -eq 0 ] && grep -q "module.kmm.sigs.x-k8s.io/args-load created" "$T/out"'
module args-unload 'r/i:1' '^.+$' | sed 's|{moduleName: kmm_ci_a}|{moduleName: kmm_ci_a, args: {unload: [--remove-holders]}}|' |
	kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "Module with modprobe.args.unload alone passes the webhook" '[ $rc -eq 0 ] && grep -q "module.kmm.sigs.x-k8s.io/args-unload created" "$T/out"'
module good 'r/i:${KERNEL_FULL_VERSION}' '^.+$' '      version: v1' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "UPDATE switching version from empty to set is rejected" 'grep -q "please delete the Module and create it again" "$T/out"'
module good 'r/i:2' '^6\..*$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "valid UPDATE is accepted" 'grep -q "module.kmm.sigs.x-k8s.io/good configured" "$T/out"'

cat <<Y | kubectl apply -f - >"$T/out" 2>&1
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: dra, namespace: $NS}
spec:
  selector: {kubernetes.io/hostname: node1}
  dra: {container: {image: 'd:1'}, driverName: gpu.example.com, deviceClasses: [{name: gpu}, {name: gpu}]}
Y
check "DRA Module with duplicate device classes is rejected" 'grep -q "spec.dra.deviceClasses\[1\].name: Duplicate value" "$T/out"'

pfv() { # name kernel apiVersion
	cat <<Y
apiVersion: kmm.sigs.x-k8s.io/$3
kind: PreflightValidation
metadata: {name: $1, labels: {kmm-api-test: "$ID"}}
spec: {kernelVersion: "$2"}
Y
}
pfv kmm-api-pfv-bad-$ID 6.1 v1beta2 | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "PreflightValidation with a 2-field kernel is rejected" 'grep -q "denied the request: spec.kernelVersion" "$T/out"'
pfv kmm-api-pfv-$ID 6.1.0-18-amd64 v1beta2 | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "valid PreflightValidation v1beta2 is accepted" '[ $rc -eq 0 ]'

# Conversion: point the CRD's conversion webhook at this server.
CA=$(base64 -w0 "$T/ca1/ca.crt")
kubectl patch crd "$CRD" --type=merge -p "{\"spec\":{\"conversion\":{\"strategy\":\"Webhook\",\"webhook\":{\"conversionReviewVersions\":[\"v1\"],\"clientConfig\":{\"service\":null,\"url\":\"$URL/convert\",\"caBundle\":\"$CA\"}}}}}" >"$T/out" 2>&1
rc=$?
check "CRD conversion webhook pointed at kmm-webhook" '[ $rc -eq 0 ]'
kubectl patch pfv "kmm-api-pfv-$ID" --subresource=status --type=merge -p '{"status":{"modules":[{"name":"m","namespace":"ns1","verificationStatus":"Success","verificationStage":"Done","statusReason":"verified image exists","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}' >/dev/null 2>&1
conv=1
for _ in $(seq 40); do
	kubectl get "preflightvalidations.v1beta1.kmm.sigs.x-k8s.io/kmm-api-pfv-$ID" -o json >"$T/out" 2>&1 && { conv=0; break; }
	sleep 0.5
done
check "v1beta2 object read as v1beta1 through the conversion webhook" '[ $conv -eq 0 ] && grep -q "\"apiVersion\": \"kmm.sigs.x-k8s.io/v1beta1\"" "$T/out"'
check "v1beta1 status.crStatuses keyed <ns>/<name> (and <name>)" 'grep -q "\"ns1/m\"" "$T/out" && grep -q "\"m\": {" "$T/out" && grep -q "verified image exists" "$T/out"'
pfv kmm-api-pfv1-$ID 6.6.0-rt15 v1beta1 | kubectl apply -f - >"$T/out" 2>&1
rc=$?
check "PreflightValidation created as v1beta1 (deprecated) is stored" '[ $rc -eq 0 ]'
kubectl get "preflightvalidations.v1beta2.kmm.sigs.x-k8s.io/kmm-api-pfv1-$ID" -o jsonpath='{.apiVersion} {.spec.kernelVersion}' >"$T/out" 2>&1
rc=$?
check "and reads back as v1beta2" 'grep -q "kmm.sigs.x-k8s.io/v1beta2 6.6.0-rt15" "$T/out"'

kubectl label namespace "$NSG" kmm.node.k8s.io/contains-modules= >/dev/null 2>&1
kubectl delete namespace "$NSG" --wait=false >"$T/out" 2>&1
rc=$?
check "deleting a namespace labelled contains-modules is refused" 'grep -q "namespace contains one or more Module resources" "$T/out" && kubectl get namespace "$NSG" -o jsonpath="{.status.phase}" | grep -q Active'
kubectl label namespace "$NSG" kmm.node.k8s.io/contains-modules- >/dev/null 2>&1
kubectl delete namespace "$NSG" --wait=false >"$T/out" 2>&1
rc=$?
check "once the label is gone the namespace can be deleted" '[ $rc -eq 0 ]'

# Rotation: a new CA and certificate, swapped in place while the server runs.
mkcerts "$T/ca2" 2
cp "$T/ca2/tls.crt.new" "$T/serving/tls.crt.tmp" && cp "$T/ca2/tls.key.new" "$T/serving/tls.key.tmp" &&
	mv "$T/serving/tls.key.tmp" "$T/serving/tls.key" && mv "$T/serving/tls.crt.tmp" "$T/serving/tls.crt"
rotated=1
for _ in $(seq 40); do
	if curl -sf --cacert "$T/ca2/ca.crt" "$URL/healthz" >/dev/null 2>&1; then rotated=0; break; fi
	sleep 0.25
done
check "new certificate served without a restart" '[ $rotated -eq 0 ] && kill -0 "$WPID"'
check "the old CA no longer verifies the server" '! curl -sf --cacert "$T/ca1/ca.crt" "$URL/healthz" >/dev/null 2>&1'
write_vwc "$T/ca2/ca.crt"
denied=1
for _ in $(seq 60); do
	module notag2 registry.local/kmod '^.+$' | kubectl apply -f - >"$T/out" 2>&1
rc=$?
	if grep -q "denied the request: spec.moduleLoader" "$T/out"; then denied=0; break; fi
	sleep 0.5
done
check "apiserver reaches the webhook with the rotated certificate" '[ $denied -eq 0 ]'
exit $fail
