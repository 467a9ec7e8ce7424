# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
# What the suites that install kmm on the real node share (kmm.t,
# deviceplugin.t, cookbook.t, rbac.t, buildsign.t): the TAP harness, a
# testenv and a node of their own in a work directory, the test modules of
# tests/vm built for the node's kernel, kmm's images and its install
# (deploy/ through the overlay of docs/testenv.md, "kmm on the real node"),
# Modules and what kmm says about them. The sourcing suite sets SRC, NODE,
# TESTENV, NS_KMM, NS, SUITE_TAG (its work directory's name) and
# KMM_NODE_NAME first, and prints its plan when it ends.
#
# One node for several suites: a suite that sets SHARES_NODE=1 before
# sourcing this file, run with KMM_NODE_SHARED=DIR (tests/run's node stage
# does), takes the node of DIR/env when an earlier suite left one there: its
# setup steps (shared_step) are then one case, shared-node, which checks that
# the node is Ready and kmm runs on it. With no DIR/env, the suite sets the
# node up itself, in DIR, and publishes it once kmm runs (t_running). Either
# way it ends (finish) with cleaned-up instead of down: its Modules and
# namespace deleted and no test module left loaded, so the next suite starts
# clean. Whoever made DIR brings the node and its testenv down:
# `bash tests/node/kmm-suite.sh down DIR` (tests/run, after the suites that
# share it).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	[ "${1:-}" = down ] && [ -n "${2:-}" ] || {
		echo "usage: tests/node/kmm-suite.sh down DIR" >&2
		exit 2
	}
	[ -f "$2/env" ] || exit 0
	set -a
	# shellcheck disable=SC1091 # written by the suite that set the node up
	. "$2/env" || exit 1
	set +a
	rc=0
	"$(dirname "${BASH_SOURCE[0]}")/node" down || rc=1
	"$(dirname "${BASH_SOURCE[0]}")/../env/testenv" down || rc=1
	rm -f "$2/env"
	exit $rc
fi

N=0
BROKEN=
STARTED=$(date +%s.%N)
pass() {
	N=$((N + 1))
	echo "ok $N - $1${2:+ # $2}"
}
fail() {
	N=$((N + 1))
	echo "not ok $N - $1"
	shift
	local l
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
check() {
	local name=$1
	shift
	if [ -n "$BROKEN" ]; then
		fail "$name" "not run: '$BROKEN' failed"
		return 1
	fi
	WHY=
	NOTE=
	if "$@"; then
		pass "$name" "$NOTE"
		return 0
	fi
	fail "$name" "${WHY:-failed}"
	return 1
}
step() {
	check "$@" || BROKEN=${BROKEN:-$1}
}
why() {
	WHY=$*
	return 1
}

# shared_step NAME FUNCTION: a setup step, which a suite on a shared node
# (SHARED_REUSE) does not take: the first one of them is shared-node instead.
shared_step() {
	if [ -z "$SHARED_REUSE" ]; then
		step "$@"
	elif [ -z "${SHARED_CHECKED:-}" ]; then
		SHARED_CHECKED=1
		step shared-node t_shared_node
	fi
}

WORK=$(mktemp -d "/tmp/kmm-node-$SUITE_TAG-t.XXXXXX")
SHARED=
[ -n "${SHARES_NODE:-}" ] && SHARED=${KMM_NODE_SHARED:-}
if [ -n "$SHARED" ] && [ -f "$SHARED/env" ]; then
	SHARED_REUSE=1
else
	SHARED_REUSE=
fi
export KMM_TESTENV_DIR=${SHARED:-$WORK}/testenv
export KMM_NODE_DIR=${SHARED:-$WORK}/node
MOD_DIR=${SHARED:-$WORK}/mod
cleanup() {
	# a published shared node stays up for the next suite
	if [ -z "$SHARED" ] || [ ! -f "$SHARED/env" ]; then
		"$NODE" down >/dev/null 2>&1
		"$TESTENV" down >/dev/null 2>&1
	fi
	if [ -n "${KMM_NODE_T_KEEP:-}" ]; then
		echo "# kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
gexec() { "$NODE" exec "$@"; }
jp() { kubectl get "$1" "$2" ${3:+-n "$3"} -o jsonpath="$4" 2>/dev/null; }
# until_ SECONDS COMMAND...: polls COMMAND every 2 s until it succeeds.
until_() {
	local end=$(($(date +%s) + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 2
	done
}
loaded() { gexec "grep -q '^$1 ' /proc/modules && [ -d /sys/module/$1 ]" >/dev/null 2>&1; }
unloaded() { gexec "! grep -q '^$1 ' /proc/modules && [ ! -d /sys/module/$1 ]" >/dev/null 2>&1; }
# has_label NAME: the node carries Module NAME's ready label (its value is empty).
has_label() { jp node "$KMM_NODE_NAME" "" '{.metadata.labels}' | grep -qF "\"kmm.node.kubernetes.io/$NS.$1.ready\":"; }
# What kmm says about a Module that does not load: its worker pods and events.
module_trouble() {
	echo "pods: $(kubectl get pods -n "$NS" -o wide --no-headers 2>&1 | tr '\n' ' ' | head -c 600)"
	echo "pod states: $(kubectl get pods -n "$NS" -o jsonpath='{range .items[*]}{.metadata.name} {.status.initContainerStatuses[*].state} {.status.containerStatuses[*].state}{"\n"}{end}' 2>&1 | head -c 900)"
	echo "events: $(kubectl get events -n "$NS" --no-headers 2>&1 | tail -n 8 | tr '\n' ' ' | head -c 1200)"
	echo "operator: $(kubectl logs -n "$NS_KMM" deploy/kmm-operator-controller --tail 8 2>&1 | tr '\n' ' ' | head -c 1200)"
	echo "guest dmesg: $(gexec dmesg 2>&1 | grep vmk_ | tail -n 5 | tr '\n' ' ')"
}

t_prereq() {
	local missing=() t
	for t in qemu-system-x86_64 buildah skopeo make gcc depmod python3 openssl; do
		command -v "$t" >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin command -v "$t" >/dev/null 2>&1 ||
			missing+=("$t")
	done
	[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
	PATH=$PATH:/sbin:/usr/sbin
	[ ${#missing[@]} -eq 0 ] || why "missing: ${missing[*]} (scripts/install-deps installs them)"
}

# The test modules of tests/vm (vmk_*), built for the kernel the node boots.
t_kmod_build() {
	# shellcheck source=tests/vm/lib.sh
	. "$SRC/tests/vm/lib.sh"
	vm_pick_kernel && vm_build_modules "$MOD_DIR" || why "$VM_ERR" || return 1
	local k
	for k in "$MOD_DIR"/*.ko; do strip --strip-debug "$k"; done
	NOTE="kernel $KVER"
}

t_testenv_up() {
	"$TESTENV" up >"$WORK/testenv-up.log" 2>&1 || why "testenv up: $(tail -n 3 "$WORK/testenv-up.log" | tr '\n' ' ')" ||
		return 1
	eval "$("$TESTENV" env)"
}

# The webhook's port on the host: QEMU forwards it to kmm-webhook's 9443 on
# the guest's host network.
t_node_up() {
	WEBHOOK_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	export KMM_NODE_HOSTFWD=$WEBHOOK_PORT:9443
	"$NODE" up >"$WORK/up.log" 2>&1 || why "node up: $(tail -n 3 "$WORK/up.log" | tr '\n' ' ')" || return 1
	eval "$("$NODE" env)"
	local kernel
	kernel=$(gexec uname -r)
	[ "$kernel" = "$KVER" ] || why "the guest runs '$kernel', the modules were built for '$KVER'" || return 1
	NOTE="$(sed -n 's/.*is Ready: //p' "$WORK/up.log")"
}

t_images() {
	local t out
	t=$(date +%s.%N)
	REG=$KMM_TESTENV_REGISTRY/kmm
	out=$(KMM_IMAGES_BUILD=${KMM_IMAGES_BUILD:-$SRC/build/release} KMM_IMAGES_OUT=$WORK/images \
		nice -n 5 "$SRC/scripts/images" build --push "$REG" --insecure 2>&1) ||
		why "scripts/images build --push $REG failed: $(tail -n 8 <<<"$out")" || return 1
	TAG=$(awk -F'\t' 'NR == 2 { print $2 }' "$WORK/images/sizes.tsv")
	[ -n "$TAG" ] || why "no tag in $WORK/images/sizes.tsv" || return 1
	NOTE="$REG/*:$TAG in $(secs "$t") s"
}

# Modules in /opt/lib/modules/<kernel>/extra with depmod's files, as kmm's
# worker expects (docs/worker.md): kmod_tree IMAGE MODULE...
kmod_tree() {
	local d=$WORK/kmod/$1 k
	shift
	mkdir -p "$d/opt/lib/modules/$KVER/extra" || return 1
	for k in "$@"; do cp "$MOD_DIR/$k.ko" "$d/opt/lib/modules/$KVER/extra/" || return 1; done
	depmod -b "$d/opt" "$KVER" 2>/dev/null || return 1
}
# kmod_shell IMAGE: busybox's sh and cp in the image, as upstream's kmod images have.
kmod_shell() {
	local a
	mkdir -p "$WORK/kmod/$1/bin" && cp /bin/busybox "$WORK/kmod/$1/bin/busybox" || return 1
	for a in sh cp ls mkdir; do ln -s busybox "$WORK/kmod/$1/bin/$a" || return 1; done
}

# deploy/ with the images just pushed and the webhook reachable from the apiserver.
t_install() {
	local ov=$WORK/overlay n h
	mkdir -p "$ov" && cp "$SRC/deploy/kustomizeconfig.yaml" "$ov/" || return 1
	{
		echo "# kmm's install (deploy/) on the real node of tests/node: docs/testenv.md"
		echo "resources: [$(realpath --relative-to="$ov" "$SRC/deploy")]"
		echo "configurations: [kustomizeconfig.yaml]"
		echo "images:"
		for n in kmm-operator kmm-webhook kmm-worker kmm-sign kmm-builder; do
			echo "- {name: $n, newName: $REG/$n, newTag: $TAG}"
		done
		cat <<OV
patches:
- target: {kind: Deployment, name: kmm-operator-webhook-server}
  patch: |
    - {op: add, path: /spec/template/spec/hostNetwork, value: true}
    - {op: add, path: /spec/template/spec/containers/0/args/-, value: --cert-host=127.0.0.1}
- target: {kind: CustomResourceDefinition, name: preflightvalidations.kmm.sigs.x-k8s.io}
  patch: |
    - {op: replace, path: /spec/conversion/webhook/clientConfig, value: {url: "https://127.0.0.1:$WEBHOOK_PORT/convert"}}
- target: {kind: ValidatingWebhookConfiguration, name: kmm-operator-validating-webhook-configuration}
  patch: |
OV
		n=0
		for h in validate-kmm-sigs-x-k8s-io-v1beta1-module validate-kmm-sigs-x-k8s-io-v1beta2-preflightvalidation \
			validate--v1-namespace; do
			echo "    - {op: replace, path: /webhooks/$n/clientConfig, value: {url: \"https://127.0.0.1:$WEBHOOK_PORT/$h\"}}"
			n=$((n + 1))
		done
	} >"$ov/kustomization.yaml"
	# The overlay replaces the webhooks by position: they must be the ones named.
	local built
	built=$(kubectl kustomize "$ov" 2>&1) || why "kubectl kustomize: $(tail -n 3 <<<"$built")" || return 1
	[ "$(grep -c "url: https://127.0.0.1:$WEBHOOK_PORT/" <<<"$built")" = 4 ] ||
		why "the overlay does not set 4 webhook URLs" || return 1
	kubectl apply --server-side -k "$ov" >"$WORK/install.log" 2>&1 ||
		why "kubectl apply --server-side -k: $(tail -n 5 "$WORK/install.log" | tr '\n' ' ')" || return 1
	NOTE="$(grep -c serverside-applied "$WORK/install.log") objects"
}

deployment_ready() { [ "$(jp deployment "$1" "$NS_KMM" '{.status.readyReplicas}')" = 1 ]; }
cabundles_set() {
	[ -n "$(jp validatingwebhookconfiguration kmm-operator-validating-webhook-configuration "" '{.webhooks[2].clientConfig.caBundle}')" ] &&
		[ -n "$(jp crd preflightvalidations.kmm.sigs.x-k8s.io "" '{.spec.conversion.webhook.clientConfig.caBundle}')" ]
}
t_running() {
	local t pods sa
	t=$(date +%s.%N)
	until_ 600 eval 'deployment_ready kmm-operator-controller && deployment_ready kmm-operator-webhook-server && cabundles_set' ||
		why "not ready in 600 s: $(kubectl get pods -n "$NS_KMM" -o wide --no-headers 2>&1 | tr '\n' ' ');" \
			"events: $(kubectl get events -n "$NS_KMM" --no-headers 2>&1 | tail -n 6 | tr '\n' ' ' | head -c 1200)" || return 1
	pods=$(kubectl get pods -n "$NS_KMM" -o jsonpath='{range .items[*]}{.spec.nodeName} {.spec.serviceAccountName} {.spec.containers[0].image}{"\n"}{end}')
	for sa in kmm-operator-controller kmm-operator-webhook; do
		grep -q "^$KMM_NODE_NAME $sa $REG/" <<<"$pods" || why "no pod of $sa on $KMM_NODE_NAME from $REG: $pods" || return 1
	done
	NOTE="both Ready, caBundles set, $(secs "$t") s after apply"
	[ -z "$SHARED" ] || shared_publish || why "cannot write $SHARED/env"
}

# What the next suite on the shared node needs of this one's setup.
shared_publish() {
	{
		printf 'KMM_TESTENV_DIR=%q\nKMM_NODE_DIR=%q\nKMM_NODE_NAME=%q\n' "$KMM_TESTENV_DIR" "$KMM_NODE_DIR" "$KMM_NODE_NAME"
		printf 'WEBHOOK_PORT=%q\nREG=%q\nTAG=%q\nKVER=%q\nSHARED_BY=%q\nSHARED_SINCE=%q\n' \
			"$WEBHOOK_PORT" "$REG" "$TAG" "$KVER" "$SUITE_TAG" "$(date +%s)"
	} >"$SHARED/env.new" && mv "$SHARED/env.new" "$SHARED/env"
}

# The node an earlier suite left in KMM_NODE_SHARED: still Ready, kmm's
# operator and webhook still running on it.
t_shared_node() {
	local ready
	PATH=$PATH:/sbin:/usr/sbin
	# shellcheck disable=SC1091 # written by shared_publish
	. "$SHARED/env" || why "cannot read $SHARED/env" || return 1
	export KMM_TESTENV_DIR KMM_NODE_DIR KMM_NODE_NAME
	eval "$("$TESTENV" env)" && eval "$("$NODE" env)" || why "testenv env / node env failed for $SHARED" || return 1
	ready=$(jp node "$KMM_NODE_NAME" "" '{.status.conditions[?(@.type=="Ready")].status}')
	[ "$ready" = True ] || why "node $KMM_NODE_NAME of $SHARED_BY.t: Ready '$ready'" || return 1
	[ "$(gexec uname -r)" = "$KVER" ] || why "the guest does not answer, or runs another kernel than $KVER" || return 1
	deployment_ready kmm-operator-controller && deployment_ready kmm-operator-webhook-server ||
		why "kmm is not running: $(kubectl get pods -n "$NS_KMM" -o wide --no-headers 2>&1 | tr '\n' ' ')" || return 1
	NOTE="$KMM_NODE_NAME, set up by $SHARED_BY.t $(($(date +%s) - SHARED_SINCE)) s ago"
}

# apply_module NAME IMAGE MODULE [YAML under container:] [YAML under spec:]
apply_module() {
	local name=$1 image=$2 mod=$3 extra=${4:-} spec=${5:-}
	kubectl apply -f - >"$WORK/module-$name.log" 2>&1 <<M
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: $name, namespace: $NS}
spec:
  selector: {kubernetes.io/hostname: $KMM_NODE_NAME}
  moduleLoader:
    container:
      modprobe:
        moduleName: $mod
$extra
      kernelMappings:
      - regexp: '^.+$'
        containerImage: $KMOD_REG/$image:\${KERNEL_FULL_VERSION}
        registryTLS: {insecure: true}
$spec
M
}

t_down() {
	"$NODE" down >"$WORK/down.log" 2>&1 || why "node down: $(tail -n 2 "$WORK/down.log" | tr '\n' ' ')"
}

# The suite's last case: down, or on a shared node cleaned-up: the suite's
# Modules deleted (FINISH_HOOK first: what else it made), no test module left
# loaded, its namespace deleted.
vmk_loaded() { gexec "grep -o '^vmk_[a-z0-9_]*' /proc/modules" 2>/dev/null | tr '\n' ' '; }
ns_modules() { kubectl get modules -n "$NS" -o name 2>/dev/null | tr '\n' ' '; }
t_cleaned_up() {
	local t
	t=$(date +%s.%N)
	[ -z "${FINISH_HOOK:-}" ] || "$FINISH_HOOK"
	kubectl delete modules -n "$NS" --all --wait=false >/dev/null 2>&1
	until_ 300 eval '[ -z "$(ns_modules)" ]' || why "Modules left in $NS 300 s after their delete: $(ns_modules)" || return 1
	until_ 300 eval '[ -z "$(vmk_loaded)" ]' || why "still loaded on the node: $(vmk_loaded); $(module_trouble)" || return 1
	[ "$NS" = default ] || kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
	NOTE="the node left clean for the next suite in $(secs "$t") s"
}
finish() {
	BROKEN=
	if [ -n "$SHARED" ] && [ -f "$SHARED/env" ]; then
		check cleaned-up t_cleaned_up
	else
		check down t_down
	fi
	echo "1..$N"
	echo "# wall time $(secs "$STARTED") s"
}
