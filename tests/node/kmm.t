#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm installed the way a user installs it, on the real node (tests/node/node):
# scripts/images builds kmm's images and pushes them to the testenv registry,
# `kubectl apply -k` of deploy/ (through a test overlay, below) installs them,
# and the operator and kmm-webhook run as pods on the guest under their own
# ServiceAccounts; the operator's worker pods load kernel modules built for
# the guest's Debian kernel into the guest's kernel. Asserted on the guest
# (/proc/modules, /sys/module, dmesg, files) and through the API:
#   a. a kmod image built the upstream way (a shell and cp in it): loaded,
#      the node's ready label, a ModuleLoaded event; the Module deleted:
#      unloaded, label gone, the Module gone (its finalizer released);
#   b. a FROM-scratch kmod image (no shell, no libc): loaded, with the
#      module it depends on, from the image's own modules.dep;
#   c. modulesLoadingOrder, inTreeModulesToRemove and firmware: the
#      firmware is on the node and the driver's request_firmware() got it;
#   e. kmm-webhook rejects an invalid Module through the apiserver and
#      converts a v1beta2 PreflightValidation read as v1beta1;
#   d. the guest reboots (same Node, new boot ID): b's module is loaded
#      again with no help;
#   g. RBAC: what the operator's and the webhook's ServiceAccounts may not do;
#      and what uses the rules no case above needs (tests/node/rbac.t reads
#      the audit log and names the request that used each rule): /metrics
#      scraped with a token (TokenReview, SubjectAccessReview), a DRA Module's
#      DeviceClass created, patched and deleted, a PreflightValidation for
#      the node's kernel (its MICs, an imageRepoSecret read),
#      kmm-webhook's serving certificate Secret broken and repaired (update).
# The overlay (docs/testenv.md, "kmm on the real node"): kmm-webhook on the
# guest's host network, reached by the apiserver through a QEMU hostfwd of
# 127.0.0.1:<port>, so the webhook configuration and the conversion webhook
# call that URL (Services have no backend path from the host), and its
# certificate names 127.0.0.1. Kmod images are named by the guest's address
# of the registry (10.0.2.100:5000), which the operator's registry check
# dials from its pod. A missing tool or a failed step fails every case after it.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv
NS_KMM=kmm-operator-system
NS=kmm-node-t
OP_SA=system:serviceaccount:$NS_KMM:kmm-operator-controller
WH_SA=system:serviceaccount:$NS_KMM:kmm-operator-webhook

SHARES_NODE=1
SUITE_TAG=kmm
export KMM_NODE_NAME=kmm-node-k$$
# shellcheck source=tests/node/kmm-suite.sh
. "$SRC/tests/node/kmm-suite.sh"

# a: vmk_a in an image with busybox's sh and cp (as upstream's images are);
# b: vmk_b and vmk_a, FROM scratch; c: vmk_o1, vmk_o2, vmk_fw and its firmware.
t_kmod_images() {
	local a
	kmod_tree a vmk_a && kmod_tree b vmk_a vmk_b && kmod_tree c vmk_o1 vmk_o2 vmk_fw && kmod_shell a ||
		why "cannot lay out the kmod images" || return 1
	mkdir -p "$WORK/kmod/c/firmware" && printf 'VMK firmware blob from the kmod image\n' >"$WORK/kmod/c/firmware/vmk-test.bin" ||
		return 1
	for a in a b c; do
		"$TESTENV" image push "$WORK/kmod/$a" "kmm-node-t/kmod-$a:$KVER" >"$WORK/push-$a.log" 2>&1 ||
			why "testenv image push kmod-$a: $(tail -n 3 "$WORK/push-$a.log")" || return 1
	done
	# The guest's name of the same registry (tests/node/lib.sh): the operator checks images from its pod.
	KMOD_REG=$KMM_NODE_GUEST_REGISTRY/kmm-node-t
}

t_a_loaded() {
	kubectl create namespace "$NS" >/dev/null 2>&1
	A_T0=$(date +%s.%N)
	apply_module kmod-a kmod-a vmk_a || why "kubectl apply: $(tail -n 3 "$WORK/module-kmod-a.log")" || return 1
	until_ 600 loaded vmk_a || why "vmk_a not in the guest's /proc/modules after 600 s; $(module_trouble)" || return 1
	NOTE="Module apply to loaded $(secs "$A_T0") s (first pulls of kmm-worker and the kmod image)"
	gexec dmesg | grep -q 'vmk_a: loaded' || why "no 'vmk_a: loaded' in the guest's dmesg"
}

t_a_label_event() {
	until_ 120 has_label kmod-a || why "no ready label on $KMM_NODE_NAME: $(jp node "$KMM_NODE_NAME" "" '{.metadata.labels}')" ||
		return 1
	local ev
	# on the Node, as upstream records it
	until_ 60 eval 'ev=$(kubectl get events -A --field-selector "reason=ModuleLoaded,involvedObject.kind=Node,involvedObject.name=$KMM_NODE_NAME" -o jsonpath="{.items[*].message}")
		grep -q "Module $NS/kmod-a loaded" <<<"$ev"' ||
		why "no ModuleLoaded event for kmod-a on the Node: $(kubectl get events -A --no-headers 2>&1 | grep -v kmm-operator-system | tail -n 5 | tr '\n' ' ')" ||
		return 1
	NOTE="event: $ev"
}

t_a_deleted() {
	local t
	t=$(date +%s.%N)
	kubectl delete module -n "$NS" kmod-a --wait=false >/dev/null 2>&1 || why "kubectl delete module failed" || return 1
	until_ 300 unloaded vmk_a || why "vmk_a still loaded 300 s after the delete; $(module_trouble)" || return 1
	until_ 120 eval '! has_label kmod-a' || why "the ready label is still on the node" || return 1
	until_ 120 eval '! kubectl get module -n "$NS" kmod-a >/dev/null 2>&1' ||
		why "the Module is still there: finalizers $(jp module kmod-a "$NS" '{.metadata.finalizers}')" || return 1
	gexec dmesg | grep -q 'vmk_a: unloaded' || why "no 'vmk_a: unloaded' in dmesg" || return 1
	NOTE="delete to unloaded and gone $(secs "$t") s"
}

t_b_loaded() {
	local t
	t=$(date +%s.%N)
	apply_module kmod-b kmod-b vmk_b || why "kubectl apply: $(tail -n 3 "$WORK/module-kmod-b.log")" || return 1
	until_ 600 loaded vmk_b || why "vmk_b not loaded after 600 s; $(module_trouble)" || return 1
	loaded vmk_a || why "vmk_b loaded without vmk_a" || return 1
	until_ 120 has_label kmod-b || why "no ready label for kmod-b" || return 1
	NOTE="Module apply to loaded $(secs "$t") s"
}

# modulesLoadingOrder [vmk_fw, vmk_o1, vmk_o2] loads vmk_o2, vmk_o1, then
# vmk_fw (docs/worker.md), which fails to load without its firmware. The
# in-tree driver: vmk_intree, installed under the guest's own /lib/modules
# and loaded before the Module exists; the worker removes it first.
t_c() {
	local t d ko=/lib/modules/$KVER/kernel/drivers/misc/vmk_intree.ko
	gexec "mkdir -p ${ko%/*} && echo $(base64 -w0 "$MOD_DIR/vmk_intree.ko") | busybox base64 -d >$ko && insmod $ko" \
		>"$WORK/intree.log" 2>&1 && loaded vmk_intree || why "cannot load vmk_intree on the guest: $(cat "$WORK/intree.log")" ||
		return 1
	t=$(date +%s.%N)
	apply_module kmod-c kmod-c vmk_fw "        modulesLoadingOrder: [vmk_fw, vmk_o1, vmk_o2]
        firmwarePath: /firmware
      inTreeModulesToRemove: [vmk_intree]" || why "kubectl apply: $(tail -n 3 "$WORK/module-kmod-c.log")" || return 1
	until_ 600 eval 'loaded vmk_o2 && loaded vmk_o1 && loaded vmk_fw' ||
		why "not all of vmk_o2 vmk_o1 vmk_fw loaded after 600 s; $(module_trouble)" || return 1
	NOTE="Module apply to loaded $(secs "$t") s"
	unloaded vmk_intree || why "the in-tree vmk_intree is still loaded" || return 1
	d=$(gexec dmesg | grep -E 'vmk_(o1|o2|fw|intree):')
	[ "$(grep -E 'vmk_intree: unloaded|vmk_o2: loaded|vmk_o1: loaded|vmk_fw: got' <<<"$d" | cut -d: -f1 | sed 's/.*\] //' | tr '\n' ' ')" = \
		"vmk_intree vmk_o2 vmk_o1 vmk_fw " ] || why "dmesg order (want vmk_intree unloaded, vmk_o2, vmk_o1, vmk_fw): $d" || return 1
	grep -q "vmk_fw: got vmk-test.bin, $(wc -c <"$WORK/kmod/c/firmware/vmk-test.bin") bytes, starts with 'VMK firmware blo'" <<<"$d" ||
		why "vmk_fw's request_firmware() did not get the image's file: $d" || return 1
	[ "$(gexec cat /lib/firmware/vmk-test.bin)" = "$(cat "$WORK/kmod/c/firmware/vmk-test.bin")" ] ||
		why "/lib/firmware/vmk-test.bin on the node is not the image's" || return 1
}

t_e_reject() {
	local out
	out=$(kubectl apply -f - 2>&1 <<M
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: invalid, namespace: $NS}
spec:
  selector: {kubernetes.io/hostname: $KMM_NODE_NAME}
  moduleLoader:
    container:
      modprobe: {moduleName: vmk_a}
      kernelMappings:
      - {regexp: '^.+$', literal: $KVER, containerImage: $KMOD_REG/kmod-a:$KVER}
M
	) && why "the invalid Module was accepted: $out" || true
	WHY="kubectl apply said: $out"
	grep -q 'admission webhook "vmodule.kb.io" denied the request' <<<"$out" &&
		grep -q 'regexp and literal are mutually exclusive' <<<"$out" || return 1
	! kubectl get module -n "$NS" invalid >/dev/null 2>&1 || why "the invalid Module exists" || return 1
	NOTE="$(tail -n 1 <<<"$out" | head -c 200)"
}

t_e_conversion() {
	local out ver
	out=$(kubectl apply -f - 2>&1 <<P
apiVersion: kmm.sigs.x-k8s.io/v1beta2
kind: PreflightValidation
metadata: {name: kmm-node-t}
spec: {kernelVersion: 9.9.9-kmm-node-t}
P
	) || why "creating a v1beta2 PreflightValidation: $out" || return 1
	ver=$(kubectl get preflightvalidations.v1beta1.kmm.sigs.x-k8s.io kmm-node-t -o jsonpath='{.apiVersion} {.spec.kernelVersion}' 2>"$WORK/conversion.err")
	kubectl delete preflightvalidation kmm-node-t --wait=false >/dev/null 2>&1
	[ "$ver" = "kmm.sigs.x-k8s.io/v1beta1 9.9.9-kmm-node-t" ] || why "read as v1beta1: '$ver' $(cat "$WORK/conversion.err")" || return 1
	NOTE="read as v1beta1 through https://127.0.0.1:$WEBHOOK_PORT/convert"
}

t_d_reboot() {
	local old new t
	old=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.bootID}')
	t=$(date +%s.%N)
	"$NODE" reboot >"$WORK/reboot.log" 2>&1 || why "node reboot: $(tail -n 3 "$WORK/reboot.log" | tr '\n' ' ')" || return 1
	new=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.bootID}')
	[ -n "$new" ] && [ "$new" != "$old" ] || why "boot ID $old -> $new" || return 1
	local ready
	ready=$(secs "$t")
	until_ 600 eval 'loaded vmk_b && loaded vmk_a' || why "vmk_b not loaded again 600 s after the reboot; $(module_trouble)" || return 1
	gexec dmesg | grep -q 'vmk_a: loaded' || why "no 'vmk_a: loaded' in this boot's dmesg" || return 1
	until_ 120 has_label kmod-b || why "no ready label after the reboot" || return 1
	NOTE="boot ID $old -> $new; power-off to Ready ${ready} s, to vmk_b loaded $(secs "$t") s"
}

# can_i VERB RESOURCE[/NAME][:SUBRESOURCE] AS [NS]: kubectl auth can-i's answer (yes/no).
can_i() {
	local r=$2
	case $r in *:*) set -- "$1" "${r%%:*}" "$3" "${4:-}" --subresource "${r#*:}" ;; esac
	kubectl auth can-i "$1" "$2" --as "$3" ${4:+-n "$4"} "${@:5}" 2>/dev/null
}
t_g_rbac() {
	local c got bad=()
	# what each uses: asked first, so that a "no" below is a denial, not a broken check
	for c in "create pods $OP_SA $NS" "patch nodes $OP_SA" "patch modules.kmm.sigs.x-k8s.io:status $OP_SA $NS" \
		"patch validatingwebhookconfigurations/kmm-operator-validating-webhook-configuration $WH_SA" \
		"update secrets/kmm-operator-webhook-server-cert $WH_SA $NS_KMM"; do
		# shellcheck disable=SC2086
		got=$(can_i $c)
		[ "$got" = yes ] || bad+=("'$c': $got, wanted yes")
	done
	for c in "create secrets $OP_SA $NS" "list secrets $OP_SA $NS" "delete nodes $OP_SA" "update nodes $OP_SA" \
		"create pods:exec $OP_SA $NS" "create serviceaccounts:token $OP_SA $NS" "create deployments $OP_SA $NS" \
		"create clusterrolebindings $OP_SA" "escalate clusterroles $OP_SA" "delete namespaces $OP_SA" \
		"create pods $WH_SA $NS" "update modules.kmm.sigs.x-k8s.io $WH_SA $NS" "get secrets/other $WH_SA $NS_KMM" \
		"list secrets $WH_SA $NS_KMM" "patch validatingwebhookconfigurations/other $WH_SA" \
		"patch customresourcedefinitions/modules.kmm.sigs.x-k8s.io $WH_SA" "patch nodes $WH_SA"; do
		# shellcheck disable=SC2086
		got=$(can_i $c)
		[ "$got" = no ] || bad+=("'$c': $got, wanted no")
	done
	[ ${#bad[@]} -eq 0 ] || why "${bad[@]}"
}

# /metrics through `kubectl port-forward` to the operator's pod: a token of a
# ServiceAccount bound to kmm-operator-metrics-reader is let in, one unbound is
# refused; the operator asked the apiserver (TokenReview, SubjectAccessReview).
t_g_metrics() {
	local port pf ok no
	kubectl create serviceaccount -n "$NS" scraper >/dev/null 2>&1 && kubectl create serviceaccount -n "$NS" stranger >/dev/null 2>&1 &&
		kubectl create clusterrolebinding kmm-node-t-scraper --clusterrole kmm-operator-metrics-reader \
			--serviceaccount "$NS:scraper" >/dev/null 2>&1 || why "cannot create the scraper's ServiceAccounts and binding" || return 1
	# kubectl port-forward quits at the first stream error ("lost connection to
	# pod"): a new one, up to three times, before judging kmm's answers.
	for _ in 1 2 3; do
		port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		kubectl port-forward -n "$NS_KMM" deploy/kmm-operator-controller "$port:8443" >"$WORK/port-forward.log" 2>&1 &
		pf=$!
		until_ 60 curl -sk -o /dev/null "https://127.0.0.1:$port/metrics"
		ok=$(curl -sk -w '%{http_code}' -o "$WORK/metrics.txt" -H "Authorization: Bearer $(kubectl create token -n "$NS" scraper)" \
			"https://127.0.0.1:$port/metrics")
		no=$(curl -sk -w '%{http_code}' -o /dev/null -H "Authorization: Bearer $(kubectl create token -n "$NS" stranger)" \
			"https://127.0.0.1:$port/metrics")
		kill "$pf" 2>/dev/null
		wait "$pf" 2>/dev/null
		[ "$ok" = 000 ] || [ "$no" = 000 ] || break
	done
	[ "$ok" = 200 ] && grep -q '^kmm_' "$WORK/metrics.txt" ||
		why "the bound token got HTTP '$ok' ($(head -c 200 "$WORK/metrics.txt")); port-forward: $(tail -n 3 "$WORK/port-forward.log")" ||
		return 1
	[ "$no" = 403 ] || why "the unbound token got HTTP '$no', wanted 403" || return 1
	NOTE="bound token 200 ($(grep -c '^kmm_' "$WORK/metrics.txt") kmm_ samples), unbound 403"
}

# A DRA Module whose selector matches no node (its DaemonSet runs nothing):
# kmm creates its DeviceClass, patches it when the Module's selectors change,
# patches the DaemonSet when its container changes, deletes the DeviceClass
# when the Module no longer names it, and the DaemonSet with the Module.
DC=kmm-node-t.example.com
dc_selectors() { kubectl get deviceclass "$DC" -o jsonpath='{.spec.selectors[*].cel.expression}' 2>/dev/null; }
t_g_dra() {
	local out
	out=$(kubectl apply -f - 2>&1 <<M
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: dra, namespace: $NS}
spec:
  selector: {kmm-node-t/no-such-node: "true"}
  dra:
    driverName: $DC
    container: {image: $REG/kmm-worker:$TAG}
    deviceClasses:
    - name: $DC
M
	) || why "kubectl apply: $out" || return 1
	until_ 120 eval '[ "$(jp deviceclass "$DC" "" "{.metadata.labels.kmm\.node\.kubernetes\.io/module\.name}")" = dra ]' ||
		why "no DeviceClass $DC of Module dra after 120 s; $(module_trouble)" || return 1
	kubectl patch module -n "$NS" dra --type json -p '[{"op": "add", "path": "/spec/dra/deviceClasses/0/selectors",
		"value": [{"cel": {"expression": "device.driver == \"'"$DC"'\""}}]}]' >"$WORK/dra-patch.log" 2>&1 ||
		why "kubectl patch module: $(cat "$WORK/dra-patch.log")" || return 1
	until_ 120 eval '[ "$(dc_selectors)" = "device.driver == \"$DC\"" ]' ||
		why "the DeviceClass's selectors are '$(dc_selectors)' 120 s after the Module's changed" || return 1
	# a new container template: kmm patches the DaemonSet's
	kubectl patch module -n "$NS" dra --type json -p '[{"op": "add", "path": "/spec/dra/container/args", "value": ["--kmm-node-t"]}]' \
		>"$WORK/dra-patch.log" 2>&1 || why "kubectl patch module: $(cat "$WORK/dra-patch.log")" || return 1
	until_ 120 eval 'kubectl get ds -n "$NS" -l kmm.node.kubernetes.io/module.name=dra \
		-o jsonpath="{.items[*].spec.template.spec.containers[0].args}" 2>/dev/null | grep -q -- --kmm-node-t' ||
		why "Module dra's DaemonSet has no --kmm-node-t 120 s after the Module's container changed" || return 1
	kubectl patch module -n "$NS" dra --type json -p '[{"op": "replace", "path": "/spec/dra/deviceClasses", "value": []}]' \
		>"$WORK/dra-patch.log" 2>&1 || why "kubectl patch module: $(cat "$WORK/dra-patch.log")" || return 1
	until_ 120 eval '! kubectl get deviceclass "$DC" >/dev/null 2>&1' ||
		why "DeviceClass $DC still there 120 s after the Module dropped it" || return 1
	kubectl delete module -n "$NS" dra --wait=false >/dev/null 2>&1 || why "kubectl delete module dra failed" || return 1
	until_ 120 eval '[ -z "$(kubectl get ds -n "$NS" -l kmm.node.kubernetes.io/module.name=dra -o name 2>/dev/null)" ]' ||
		why "Module dra's DaemonSet still there 120 s after the delete" || return 1
	until_ 120 eval '! kubectl get module -n "$NS" dra >/dev/null 2>&1' || why "Module dra is still there" || return 1
	NOTE="DeviceClass created, patched, deleted; DaemonSet patched, gone with the Module"
}

# A PreflightValidation for the node's kernel, with a Module that selects no
# node (nothing loads) and has an imageRepoSecret: kmm verifies its image
# through a MIC the PreflightValidation owns (the registry check reads the
# Secret) and reports it; the Module's image changed, the MIC's too; the
# Module deleted, its entry and MIC go.
PFV=kmm-node-t-preflight
pfv_entries() {
	kubectl get preflightvalidations.v1beta2.kmm.sigs.x-k8s.io "$PFV" \
		-o jsonpath='{range .status.modules[*]}{.namespace}/{.name}={.verificationStatus} {end}' 2>/dev/null
}
t_g_preflight() {
	local out
	kubectl create secret docker-registry -n "$NS" kmod-pull --docker-server "$KMM_NODE_GUEST_REGISTRY" \
		--docker-username kmm --docker-password unused >/dev/null 2>&1 || why "cannot create the Secret" || return 1
	out=$(kubectl apply -f - 2>&1 <<M
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: kmod-p, namespace: $NS}
spec:
  selector: {kmm-node-t/no-such-node: "true"}
  imageRepoSecret: {name: kmod-pull}
  moduleLoader:
    container:
      modprobe: {moduleName: vmk_a}
      kernelMappings:
      - {literal: $KVER, containerImage: $KMOD_REG/kmod-a:$KVER, registryTLS: {insecure: true}}
---
apiVersion: kmm.sigs.x-k8s.io/v1beta2
kind: PreflightValidation
metadata: {name: $PFV}
spec: {kernelVersion: $KVER}
M
	) || why "kubectl apply: $out" || return 1
	until_ 300 eval 'grep -q "$NS/kmod-p=Success " <<<"$(pfv_entries)"' ||
		why "no Success for $NS/kmod-p 300 s later: '$(pfv_entries)'; $(module_trouble)" || return 1
	NOTE="$(pfv_entries)"
	# another image for the kernel: kmm patches the MIC's spec
	kubectl patch module -n "$NS" kmod-p --type json -p '[{"op": "replace",
		"path": "/spec/moduleLoader/container/kernelMappings/0/containerImage", "value": "'"$KMOD_REG/kmod-b:$KVER"'"}]' \
		>"$WORK/pfv-patch.log" 2>&1 || why "kubectl patch module: $(cat "$WORK/pfv-patch.log")" || return 1
	until_ 120 eval 'kubectl get moduleimagesconfig -n "$NS" "kmod-p-preflight-$PFV" -o jsonpath="{.spec.images[*].image}" 2>/dev/null |
		grep -q "/kmod-b:"' || why "the MIC kmod-p-preflight-$PFV has no kmod-b image 120 s after the Module's changed" || return 1
	kubectl delete module -n "$NS" kmod-p --wait=false >/dev/null 2>&1 || why "kubectl delete module kmod-p failed" || return 1
	until_ 120 eval '! grep -q "$NS/kmod-p=" <<<"$(pfv_entries)" && ! kubectl get moduleimagesconfig -n "$NS" "kmod-p-preflight-$PFV" >/dev/null 2>&1' ||
		why "kmod-p still in the status ('$(pfv_entries)') or its MIC still there 120 s after the delete" || return 1
	kubectl delete preflightvalidation "$PFV" --wait=false >/dev/null 2>&1
	NOTE="$NOTE; kmod-p's entry and MIC gone after its delete"
}

# kmm-webhook checks its Secret every 60 s (--cert-check-interval) and
# writes a new certificate over one that is not valid.
SECRET=kmm-operator-webhook-server-cert
cert_valid() {
	kubectl get secret -n "$NS_KMM" "$SECRET" -o jsonpath='{.data.tls\.crt}' 2>/dev/null | base64 -d 2>/dev/null |
		openssl x509 -noout 2>/dev/null
}
t_g_cert_repair() {
	local t
	cert_valid || why "the Secret's tls.crt is not a certificate to begin with" || return 1
	kubectl patch secret -n "$NS_KMM" "$SECRET" -p "{\"data\": {\"tls.crt\": \"$(printf 'not a certificate' | base64 -w0)\"}}" \
		>"$WORK/secret-patch.log" 2>&1 || why "kubectl patch secret: $(cat "$WORK/secret-patch.log")" || return 1
	t=$(date +%s.%N)
	until_ 180 cert_valid || why "tls.crt still not a certificate 180 s later; kmm-webhook:" \
		"$(kubectl logs -n "$NS_KMM" deploy/kmm-operator-webhook-server --tail 5 2>&1 | tr '\n' ' ' | head -c 900)" || return 1
	NOTE="repaired $(secs "$t") s after the damage"
}

# A Module whose image is missing and whose build fails at once (a RUN in a
# FROM-scratch image has no shell): kmm asks for the build through a
# ModuleBuildSignConfig owned by the Module's MIC, the builder pod runs on the
# node (kmm's own kmm-builder image) and fails, and kmm records the failure in
# the MBSC's status; nothing loads. The Module deleted, all of it goes. (The
# build that succeeds and is signed is tests/node/buildsign.t's, under Secure
# Boot; this one is cheap enough for every run.)
mbsc_status() {
	kubectl get modulebuildsignconfigs -n "$NS" kmod-nobuild -o jsonpath='{.status.images[*].status}' 2>/dev/null
}
t_g_build_failed() {
	local out uid
	out=$(kubectl apply -f - 2>&1 <<M
apiVersion: v1
kind: ConfigMap
metadata: {name: kmod-nobuild-dockerfile, namespace: $NS}
data:
  dockerfile: |
    FROM scratch
    RUN false
M
	) || why "kubectl apply configmap: $out" || return 1
	apply_module kmod-nobuild node-nobuild vmk_nobuild "" "        build: {dockerfileConfigMap: {name: kmod-nobuild-dockerfile}}" ||
		why "kubectl apply: $(tail -n 3 "$WORK/module-kmod-nobuild.log")" || return 1
	until_ 120 eval 'kubectl get modulebuildsignconfigs -n "$NS" kmod-nobuild -o jsonpath="{.metadata.ownerReferences[0].kind}" 2>/dev/null | grep -q ModuleImagesConfig' ||
		why "no ModuleBuildSignConfig kmod-nobuild owned by its MIC after 120 s; $(module_trouble)" || return 1
	until_ 600 eval 'mbsc_status | grep -q Failure' ||
		why "the MBSC's status is '$(mbsc_status)' 600 s after the Module (pods: $(kubectl get pods -n "$NS" -o wide 2>&1 | tail -n +2 | tr '\n' ';'))" || return 1
	! loaded vmk_nobuild || why "vmk_nobuild loaded although its image was never built" || return 1
	NOTE="MBSC owned by the MIC; the build pod failed on the node; its status: $(mbsc_status)"
	# new build args: the MBSC is patched; a rebuild asked for: it is deleted and made anew
	kubectl patch module -n "$NS" kmod-nobuild --type json -p '[{"op": "add",
		"path": "/spec/moduleLoader/container/kernelMappings/0/build/buildArgs",
		"value": [{"name": "KMM_NODE_T_ARG", "value": "1"}]}]' >"$WORK/nobuild-patch.log" 2>&1 ||
		why "kubectl patch module: $(cat "$WORK/nobuild-patch.log")" || return 1
	until_ 120 eval 'kubectl get modulebuildsignconfigs -n "$NS" kmod-nobuild -o json 2>/dev/null | grep -q KMM_NODE_T_ARG' ||
		why "the MBSC has no KMM_NODE_T_ARG 120 s after the Module's build args changed" || return 1
	uid=$(jp modulebuildsignconfigs kmod-nobuild "$NS" '{.metadata.uid}')
	kubectl patch module -n "$NS" kmod-nobuild --type merge -p '{"spec": {"imageRebuildTriggerGeneration": 1}}' \
		>"$WORK/nobuild-patch.log" 2>&1 || why "kubectl patch module: $(cat "$WORK/nobuild-patch.log")" || return 1
	until_ 120 eval '[ "$(jp module kmod-nobuild "$NS" "{.status.imageRebuildTriggerGeneration}")" = 1 ]' ||
		why "the Module's status.imageRebuildTriggerGeneration is not 1 after 120 s" || return 1
	until_ 120 eval '[ "$(jp modulebuildsignconfigs kmod-nobuild "$NS" "{.metadata.uid}")" != "$uid" ]' ||
		why "MBSC $uid not deleted 120 s after the rebuild trigger" || return 1
	NOTE="$NOTE; patched for new build args, deleted and made anew for the rebuild trigger"
	kubectl delete module -n "$NS" kmod-nobuild --wait=false >/dev/null 2>&1 || why "kubectl delete module failed" || return 1
	until_ 120 eval '! kubectl get module -n "$NS" kmod-nobuild >/dev/null 2>&1' || why "Module kmod-nobuild is still there" || return 1
	until_ 120 eval '! kubectl get modulebuildsignconfigs -n "$NS" kmod-nobuild >/dev/null 2>&1' ||
		why "ModuleBuildSignConfig kmod-nobuild is still there 120 s after its Module" || return 1
	kubectl delete configmap -n "$NS" kmod-nobuild-dockerfile >/dev/null 2>&1
}

# On a shared node: what the cases made besides Modules in $NS.
kmm_t_leftovers() {
	kubectl delete clusterrolebinding kmm-node-t-scraper --ignore-not-found >/dev/null 2>&1
	kubectl delete preflightvalidations.v1beta2.kmm.sigs.x-k8s.io kmm-node-t "$PFV" --ignore-not-found --wait=false >/dev/null 2>&1
}
FINISH_HOOK=kmm_t_leftovers

shared_step prerequisites t_prereq
shared_step kmod-build t_kmod_build
shared_step testenv-up t_testenv_up
shared_step node-up t_node_up
shared_step images-pushed t_images
step kmod-images-pushed t_kmod_images
shared_step install t_install
shared_step operator-and-webhook-running t_running
step a-loaded t_a_loaded
check a-label-and-event t_a_label_event
check a-deleted-unloaded t_a_deleted
step b-scratch-loaded t_b_loaded
check c-order-intree-firmware t_c
check e-webhook-rejects-invalid-module t_e_reject
check e-preflight-conversion t_e_conversion
check d-reboot-reloads t_d_reboot
check g-rbac-denied t_g_rbac
check g-metrics-token-reviewed t_g_metrics
check g-dra-deviceclasses t_g_dra
check g-preflight-on-node t_g_preflight
check g-webhook-repairs-cert t_g_cert_repair
check g-build-failed t_g_build_failed
finish
