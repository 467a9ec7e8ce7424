#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# In-cluster build and sign on the real node under Secure Boot, following
# docs/cookbook/build.md and sign.md ("In the cluster, on a real node" and
# "... on a Secure Boot node", kept in step by hand): kmm installed as kmm.t
# installs it (tests/node/kmm-suite.sh) on a node that boots under OVMF with
# Secure Boot on, the suite's signing certificate in MokListRT and
# module.sig_enforce=1 (KMM_NODE_SECURE_BOOT, tests/node/lib.sh). Then the
# cookbook's sample (deploy/samples/build-sign):
#   - the Debian build base (gcc, make, libc6-dev, kmod, the guest kernel's
#     headers; tests/chain's cached base) and the module sources pushed to the
#     registry (tests/chain/step base, source);
#   - Module vmk (build + sign): kmm-operator runs the build pod (kmm-builder,
#     buildah) on the node, which pulls the base and compiles tests/vm's
#     modules from the ConfigMap's Dockerfile, then the sign pod (kmm-sign in
#     buildah), and the worker loads vmk_b and vmk_a, verified by the kernel
#     (no E taint), the ready label set, Ready True;
#   - Module vmk-unsigned (build, no sign, vmk_o1): built on the node, then
#     refused: vmk_o1 never loads, the kernel logs the rejection, the worker's
#     log has kmm-worker's error, the Module's Ready condition says the worker
#     failed and the node's NodeModulesConfig status never lists it. Its
#     Dockerfile copies tests/vm's vmk_o1, compiled on the host, from a
#     FROM-scratch image instead of compiling it again: a second build from
#     the 130 MB base would pull and unpack it again in its own pod, which
#     under TCG costs minutes and proves nothing vmk's build does not.
# Both Modules are applied together: their builds run side by side.
# Wall times (build pods, sign pod, Secure Boot boot, apply to loaded) are in
# the TAP notes. A missing tool or a failed step fails every case after it.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv
STEP=$SRC/tests/chain/step
NS_KMM=kmm-operator-system
# The cookbook's namespace: the sample's ConfigMap and Module live in default.
NS=default
SAMPLES=$SRC/deploy/samples/build-sign
SIGN_CN="kmm buildsign.t signing key"

CASES=(prerequisites kmod-build signing-key testenv-up base-and-source-pushed node-up-secure-boot images-pushed install
	operator-and-webhook-running modules-applied builds-on-node sign-on-node signed-image
	signed-loads unsigned-refused unsigned-not-in-nmc-status down)
echo "1..${#CASES[@]}"

SUITE_TAG=buildsign
export KMM_NODE_NAME=kmm-node-bs$$
# Two builds side by side, each unpacking the base (vfs storage) in the
# node's tmpfs /var: more memory than the other suites' 2 GiB.
export KMM_NODE_MEM=${KMM_NODE_MEM:-5120}
# shellcheck source=tests/node/kmm-suite.sh
. "$SRC/tests/node/kmm-suite.sh"
# shellcheck source=tests/chain/lib.sh
. "$SRC/tests/chain/lib.sh"

t_prereq_bs() {
	t_prereq || return 1
	CHAIN_WORK=$WORK/chain
	chain_check_tools || why "$CHAIN_ERR" || return 1
	vm_pick_kernel || why "$VM_ERR" || return 1
	NOTE="kernel $KVER"
}

# docs/cookbook/sign.md, "Keys": the key the sign pod uses and the
# certificate the node trusts (MokListRT).
t_key() {
	mkdir -p "$WORK/keys" && cd "$WORK/keys" || return 1
	cat >x509.cnf <<EOF
[ req ]
distinguished_name = dn
prompt = no
x509_extensions = ext
[ dn ]
CN = $SIGN_CN
[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
	openssl req -new -x509 -newkey rsa:2048 -nodes -days 365 -sha256 -config x509.cnf \
		-keyout signing_key.pem -out signing_cert.pem >openssl.log 2>&1 || why "openssl: $(cat openssl.log)" || return 1
	cd "$SRC" || return 1
}

# docs/cookbook/build.md: the two images the sample's Dockerfile builds from.
t_base_source() {
	local t
	t=$(date +%s.%N)
	nice -n 5 "$STEP" base "$KVER" >"$WORK/step-base.log" 2>&1 ||
		why "step base: $(tail -n 3 "$WORK/step-base.log")" || return 1
	nice -n 5 "$STEP" source >"$WORK/step-source.log" 2>&1 ||
		why "step source: $(tail -n 3 "$WORK/step-source.log")" || return 1
	kmod_tree u vmk_o1 && "$TESTENV" image push "$WORK/kmod/u" "kmm/vmk-prebuilt:$KVER" >"$WORK/push-u.log" 2>&1 ||
		why "testenv image push vmk-prebuilt: $(tail -n 3 "$WORK/push-u.log")" || return 1
	NOTE="$(tail -n 1 "$WORK/step-base.log"); sources; prebuilt vmk_o1; $(secs "$t") s"
}

t_node_up_sb() {
	local t d
	export KMM_NODE_SECURE_BOOT=$WORK/keys/signing_cert.pem
	t=$(date +%s.%N)
	t_node_up || return 1
	NOTE="$NOTE; $(secs "$t") s"
	# shellcheck disable=SC2016 # expanded in the guest
	d=$(gexec 'dmesg; echo sig_enforce=$(cat /sys/module/module/parameters/sig_enforce)')
	grep -q 'secureboot: Secure boot enabled' <<<"$d" || why "no 'Secure boot enabled' in the guest's dmesg" || return 1
	grep -q "Loaded X.509 cert '$SIGN_CN" <<<"$d" && grep -q 'UEFI:MokListRT' <<<"$d" ||
		why "the signing certificate was not loaded from MokListRT: $(grep -i 'x.509\|moklist' <<<"$d" | tr '\n' ' ')" || return 1
	grep -q '^sig_enforce=Y' <<<"$d" || why "module.sig_enforce is not on: $(grep sig_enforce <<<"$d")" || return 1
}

# kmm's images by the registry's guest address: the build and sign pods'
# buildah pulls kmm-sign itself, from the pod (127.0.0.1 would be its own).
t_install_bs() {
	REG=$KMM_NODE_GUEST_REGISTRY/kmm
	t_install
}

# docs/cookbook/build.md, "In the cluster, on a real node", and sign.md, "In the
# cluster, on a Secure Boot node".
t_apply() {
	local out
	kubectl label node "$KMM_NODE_NAME" kmm.example.com/vmk=true >/dev/null || why "cannot label the node" || return 1
	kubectl create secret generic vmk-signing-key -n "$NS" --from-file=key="$WORK/keys/signing_key.pem" >/dev/null &&
		kubectl create secret generic vmk-signing-cert -n "$NS" --from-file=cert="$WORK/keys/signing_cert.pem" >/dev/null ||
		why "cannot create the key and certificate Secrets" || return 1
	out=$(kubectl apply -f "$SAMPLES/dockerfile-configmap.yaml" 2>&1) || why "ConfigMap: $out" || return 1
	APPLIED=$(date +%s.%N)
	out=$(sed "s|kmm-registry.local:5000|$KMM_NODE_GUEST_REGISTRY|" "$SAMPLES/module.yaml" | kubectl apply -f - 2>&1) ||
		why "Module vmk: $out" || return 1
	out=$(kubectl apply -f - 2>&1 <<M
apiVersion: v1
kind: ConfigMap
metadata: {name: vmk-unsigned-dockerfile, namespace: $NS}
data:
  dockerfile: |
    ARG KERNEL_FULL_VERSION
    ARG PREBUILT_IMAGE
    FROM \${PREBUILT_IMAGE}:\${KERNEL_FULL_VERSION} AS prebuilt
    FROM scratch
    ARG KERNEL_FULL_VERSION
    COPY --from=prebuilt /opt/lib/modules/\${KERNEL_FULL_VERSION} /opt/lib/modules/\${KERNEL_FULL_VERSION}
---
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: vmk-unsigned, namespace: $NS}
spec:
  selector: {kmm.example.com/vmk: "true"}
  moduleLoader:
    container:
      modprobe: {moduleName: vmk_o1}
      kernelMappings:
        - regexp: '^.+-amd64$'
          containerImage: $KMM_NODE_GUEST_REGISTRY/kmm/vmk-unsigned:\${KERNEL_FULL_VERSION}
          registryTLS: {insecure: true}
          build:
            dockerfileConfigMap: {name: vmk-unsigned-dockerfile}
            buildArgs:
              - {name: PREBUILT_IMAGE, value: $KMM_NODE_GUEST_REGISTRY/kmm/vmk-prebuilt}
            baseImageRegistryTLS: {insecure: true}
M
	) || why "Module vmk-unsigned: $out" || return 1
}

# The Module's events of reason $2 (BuildCreated, SignSucceeded, ...).
mod_event() {
	kubectl get events -n "$NS" --field-selector "involvedObject.kind=Module,involvedObject.name=$1,reason=$2" \
		-o jsonpath='{.items[*].message}' 2>/dev/null
}
ready_cond() { jp module "$1" "$NS" '{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].message}'; }
is_ready() { [ "$(ready_cond "$1" | cut -d' ' -f1)" = True ]; }
# Build and sign pods of the namespace, as seen: name node phase image.
BS_PODS_SEL=kmm.node.kubernetes.io/resource-type
seen_pods() {
	kubectl get pods -n "$NS" -l "$BS_PODS_SEL" -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.spec.containers[0].image}{"\n"}{end}' \
		2>/dev/null >>"$WORK/bs-pods"
}
bs_trouble() {
	echo "build/sign pods: $(sort -u "$WORK/bs-pods" 2>/dev/null | tr '\n' ' ' | head -c 900)"
	local p
	for p in $(kubectl get pods -n "$NS" -l "$BS_PODS_SEL" -o name 2>/dev/null); do
		echo "$p log: $(kubectl logs -n "$NS" "$p" --tail 15 2>&1 | tr '\n' ' ' | head -c 1500)"
	done
	echo "vmk: $(ready_cond vmk); vmk-unsigned: $(ready_cond vmk-unsigned)"
	module_trouble
}
# The first time ($(secs APPLIED)) each milestone was seen, in T_<name>.
mark() { [ -n "${!1:-}" ] || printf -v "$1" '%s' "$(secs "$APPLIED")"; }

# One poll loop for both Modules: the events of their build and sign pods,
# the pods, the guest's modules, the unsigned Module's worker failures.
progress() {
	seen_pods
	[ -n "$(mod_event vmk BuildCreated)" ] && mark T_BUILD_CREATED
	[ -n "$(mod_event vmk BuildSucceeded)" ] && mark T_BUILD_DONE
	[ -n "$(mod_event vmk SignCreated)" ] && mark T_SIGN_CREATED
	[ -n "$(mod_event vmk SignSucceeded)" ] && mark T_SIGN_DONE
	[ -n "$(mod_event vmk-unsigned BuildCreated)" ] && mark T_UBUILD_CREATED
	[ -n "$(mod_event vmk-unsigned BuildSucceeded)" ] && mark T_UBUILD_DONE
	[ -n "${T_LOADED:-}" ] || { loaded vmk_b && loaded vmk_a && mark T_LOADED; }
	[ -n "${T_UFAILED:-}" ] || { grep -q 'worker failed' <<<"$(ready_cond vmk-unsigned)" && mark T_UFAILED; }
	local f
	f=$(mod_event vmk BuildFailed)$(mod_event vmk SignFailed)$(mod_event vmk-unsigned BuildFailed)
	[ -z "$f" ] || { FAILED_EVENT=$f; return 0; }
	[ -n "${T_LOADED:-}" ] && [ -n "${T_UFAILED:-}" ]
}
t_wait() {
	FAILED_EVENT=
	until_ 1800 progress
	[ -z "$FAILED_EVENT" ] || why "$FAILED_EVENT" "$(bs_trouble)" || return 1
	[ -n "${T_LOADED:-}" ] && [ -n "${T_UFAILED:-}" ] ||
		why "after 1800 s: vmk_b loaded at '${T_LOADED:-}', vmk-unsigned's worker failed at '${T_UFAILED:-}'" \
			"$(bs_trouble)" || return 1
}

# Build pods of both Modules, on the node, from kmm-builder, succeeded.
t_builds() {
	t_wait || return 1
	local b
	for b in vmk vmk-unsigned; do
		grep -qE "^$b-build-[a-z0-9-]+ $KMM_NODE_NAME [A-Za-z]+ $REG/kmm-builder:$TAG\$" "$WORK/bs-pods" ||
			why "no build pod of $b from $REG/kmm-builder:$TAG seen on $KMM_NODE_NAME: $(sort -u "$WORK/bs-pods" | tr '\n' ' ')" ||
			return 1
	done
	NOTE="vmk: build pod created at ${T_BUILD_CREATED:-?} s, succeeded at ${T_BUILD_DONE:-?} s;"
	NOTE+=" vmk-unsigned: ${T_UBUILD_CREATED:-?} s to ${T_UBUILD_DONE:-?} s (after the Modules' apply, both at once)"
}

t_sign() {
	grep -qE "^vmk-sign-[a-z0-9-]+ $KMM_NODE_NAME [A-Za-z]+ $REG/kmm-builder:$TAG\$" "$WORK/bs-pods" ||
		why "no sign pod of vmk seen on $KMM_NODE_NAME: $(sort -u "$WORK/bs-pods" | tr '\n' ' ')" || return 1
	[ -z "$(mod_event vmk-unsigned SignCreated)" ] || why "vmk-unsigned has a sign pod" || return 1
	NOTE="sign pod created at ${T_SIGN_CREATED:-?} s, succeeded at ${T_SIGN_DONE:-?} s"
}

# What the sign pod pushed: the build's layer, and on top the two files of
# filesToSign, signed (tests/chain/imagefiles.py).
t_signed_image() {
	local img=$KMM_TESTENV_REGISTRY/kmm/vmk:$KVER d=lib/modules/$KVER/extra f
	skopeo copy --quiet --src-tls-verify=false "docker://$img" "oci:$WORK/oci:signed" >/dev/null 2>&1 ||
		why "cannot copy $img from the registry" || return 1
	python3 "$SRC/tests/chain/imagefiles.py" "$WORK/oci" signed >"$WORK/files-signed" || why "cannot read the image" || return 1
	for f in vmk_a vmk_b; do
		grep -qE "^1 opt/$d/$f.ko .* signed\$" "$WORK/files-signed" || why "/opt/$d/$f.ko is not signed in layer 1" || return 1
	done
	grep -qE "^0 opt/$d/vmk_a.ko .* -\$" "$WORK/files-signed" || why "layer 0 (the build's) lacks the unsigned vmk_a.ko" ||
		return 1
	! grep -q "^2 " "$WORK/files-signed" || why "more than two layers" || return 1
	NOTE="$img: $(grep -c ' signed$' "$WORK/files-signed") signed files in the sign pod's layer"
}

t_signed_loads() {
	local d line
	d=$(gexec dmesg)
	grep -q 'vmk_b: loaded, vmk_a_add(40, 2) = 42' <<<"$d" || why "no 'vmk_b: loaded ... = 42' in dmesg" || return 1
	# E: an unsigned or unverified module was loaded; the kernel verified these.
	line=$(gexec "grep -E '^vmk_(a|b) ' /proc/modules")
	[ "$(grep -c ' (O)$' <<<"$line")" = 2 ] || why "taint flags of vmk_a/vmk_b: $line" || return 1
	! grep -q 'module verification failed' <<<"$d" || why "dmesg: $(grep 'verification failed' <<<"$d")" || return 1
	until_ 120 has_label vmk || why "no ready label for vmk" || return 1
	until_ 120 is_ready vmk || why "vmk Ready: $(ready_cond vmk)" || return 1
	NOTE="Module apply to loaded ${T_LOADED} s (both builds, the sign pod, the worker)"
}

t_unsigned_refused() {
	local d cond logs p
	unloaded vmk_o1 || why "vmk_o1 is loaded" || return 1
	d=$(gexec dmesg)
	grep -q 'Loading of unsigned module is rejected' <<<"$d" || why "the kernel did not log a rejection" || return 1
	cond=$(ready_cond vmk-unsigned)
	grep -qE "^False node $KMM_NODE_NAME: worker failed [0-9]+ time\(s\), last exit code [1-9][0-9]* \(Error\)" <<<"$cond" ||
		why "vmk-unsigned Ready: '$cond'" || return 1
	for p in $(kubectl get pods -n "$NS" -l kmm.node.kubernetes.io/module.name=vmk-unsigned -o name 2>/dev/null); do
		logs+=$(kubectl logs -n "$NS" "$p" --previous 2>/dev/null; kubectl logs -n "$NS" "$p" 2>/dev/null)
	done
	grep -q 'the module is not signed, and this kernel only loads signed modules' <<<"${logs:-}" ||
		why "kmm-worker's error not in the worker's log: $(tail -n 3 <<<"${logs:-}")" || return 1
	NOTE="worker failed ${T_UFAILED} s after apply; Ready: $cond; worker: $(grep -o 'load module vmk_o1.*' <<<"$logs" | head -n 1 | head -c 300)"
}

t_nmc() {
	local st
	st=$(jp nodemodulesconfig "$KMM_NODE_NAME" "" '{range .status.modules[*]}{.namespace}/{.name} {end}')
	grep -qw "$NS/vmk" <<<"$st" || why "the NodeModulesConfig status lacks $NS/vmk: '$st'" || return 1
	! grep -q "$NS/vmk-unsigned" <<<"$st" || why "the NodeModulesConfig status lists $NS/vmk-unsigned: '$st'" || return 1
	NOTE="status.modules: $st"
}

step prerequisites t_prereq_bs
step kmod-build t_kmod_build
step signing-key t_key
step testenv-up t_testenv_up
step base-and-source-pushed t_base_source
step node-up-secure-boot t_node_up_sb
step images-pushed t_images
step install t_install_bs
step operator-and-webhook-running t_running
step modules-applied t_apply
step builds-on-node t_builds
step sign-on-node t_sign
check signed-image t_signed_image
step signed-loads t_signed_loads
check unsigned-refused t_unsigned_refused
check unsigned-not-in-nmc-status t_nmc
BROKEN=
check down t_down
echo "# wall time $(secs "$STARTED") s"
