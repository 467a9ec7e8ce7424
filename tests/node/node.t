#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The real node (tests/node/node) joined to a testenv of its own: a QEMU/TCG
# guest on Debian's kernel running the pinned kubelet, containerd 2.x, runc
# and the CNI bridge. Asserts what a real kubelet does that kwok only
# imitates: the Node registers and turns Ready with the guest's own boot ID
# and kernel; a pod from the testenv registry runs to Succeeded on it (the
# sandbox from the suite's pause image), leaves a file on the node through a
# hostPath, and its log reaches the apiserver through the forwarded kubelet
# port; the guest's /proc/modules is readable through the command channel.
# A missing tool or a failed step fails every case that depends on it.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv

CASES=(build testenv-up boot join node-identity node-runtime node-address-lease pod-succeeded
	pod-hostpath-on-node pod-images-from-registry pod-logs pod-reaches-apiserver proc-modules reboot down)
echo "1..${#CASES[@]}"

N=0
BROKEN=
pass() {
	N=$((N + 1))
	echo "ok $N - $1${2:+ # $2}"
}
fail() {
	N=$((N + 1))
	echo "not ok $N - $1"
	shift
	local l
	for l in "$@"; do echo "#   $l"; done
}
# check NAME COMMAND...: a case that needs every earlier step.
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
# step: a check whose failure stops everything after it.
step() {
	check "$@" || BROKEN=${BROKEN:-$1}
}

WORK=$(mktemp -d /tmp/kmm-node-t.XXXXXX)
export KMM_TESTENV_DIR=$WORK/testenv
export KMM_NODE_NAME=kmm-node-t$$
export KMM_NODE_DIR=$WORK/node
cleanup() {
	"$NODE" down >/dev/null 2>&1
	"$TESTENV" down >/dev/null 2>&1
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

t_build() {
	local t
	t=$(date +%s.%N)
	"$NODE" build >"$WORK/build.log" 2>&1 || {
		WHY="$(tail -n 3 "$WORK/build.log" | tr '\n' ' ')"
		return 1
	}
	NOTE="$(secs "$t") s (cached Go builds; the first build on a machine is much longer, see docs/testenv.md)"
}

t_testenv_up() {
	"$TESTENV" up >"$WORK/testenv-up.log" 2>&1 || {
		WHY="testenv up: $(tail -n 3 "$WORK/testenv-up.log" | tr '\n' ' ')"
		return 1
	}
	eval "$("$TESTENV" env)"
}

t_boot() {
	"$NODE" up >"$WORK/up.log" 2>&1
	UP_RC=$?
	[ -f "$KMM_NODE_DIR/state" ] || {
		WHY="node up: $(tail -n 3 "$WORK/up.log" | tr '\n' ' ')"
		return 1
	}
	[ "$(gexec echo channel-ok 2>&1)" = channel-ok ] || {
		WHY="the command channel does not answer: $(tail -n 3 "$WORK/up.log" | tr '\n' ' ')"
		return 1
	}
	NOTE="boot to command channel $(sed -n 's/.*boot \([0-9.]*\) s.*/\1/p' "$WORK/up.log") s"
	eval "$("$NODE" env)"
}

t_join() {
	[ "$UP_RC" = 0 ] || {
		WHY="node up: $(tail -n 3 "$WORK/up.log" | tr '\n' ' ')"
		return 1
	}
	[ "$(jp node "$KMM_NODE_NAME" "" '{.status.conditions[?(@.type=="Ready")].status}')" = True ] || {
		WHY="Node not Ready"
		return 1
	}
	NOTE="boot start to Ready $(sed -n 's/.*join \([0-9.]*\) s.*/\1/p' "$WORK/up.log") s"
}

t_node_identity() {
	local boot kernel nboot nkernel
	boot=$(gexec cat /proc/sys/kernel/random/boot_id) && kernel=$(gexec uname -r) || {
		WHY="cannot read the guest's boot ID and kernel"
		return 1
	}
	nboot=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.bootID}')
	nkernel=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.kernelVersion}')
	WHY="node bootID '$nboot' kernelVersion '$nkernel', guest boot_id '$boot' kernel '$kernel'"
	[ -n "$boot" ] && [ "$nboot" = "$boot" ] && [ "$nkernel" = "$kernel" ] && [ "$kernel" != "$(uname -r)" ] || return 1
	NOTE="kernel $kernel, boot ID $boot"
}

t_node_runtime() {
	local kubelet runtime want
	. "$SRC/tests/env/versions"
	kubelet=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.kubeletVersion}')
	runtime=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.containerRuntimeVersion}')
	want="containerd://${CONTAINERD_VERSION#v}"
	WHY="kubeletVersion '$kubelet' (want $KUBE_VERSION), containerRuntimeVersion '$runtime' (want $want)"
	[ "$kubelet" = "$KUBE_VERSION" ] && [ "$runtime" = "$want" ] || return 1
	NOTE="$kubelet, $runtime"
}

t_node_address_lease() {
	local addrs holder
	addrs=$(jp node "$KMM_NODE_NAME" "" '{range .status.addresses[*]}{.type}={.address} {end}')
	holder=$(jp lease "$KMM_NODE_NAME" kube-node-lease '{.spec.holderIdentity}')
	WHY="addresses '$addrs' (want only InternalIP=127.0.0.1), node Lease holder '$holder'"
	[ "$addrs" = "InternalIP=127.0.0.1 " ] && [ "$holder" = "$KMM_NODE_NAME" ]
}

t_pod_succeeded() {
	TOKEN=kmm-node-$RANDOM$RANDOM
	kubectl create namespace node-t >/dev/null 2>&1
	kubectl apply -f - >"$WORK/pod.log" 2>&1 <<POD || {
apiVersion: v1
kind: Pod
metadata: {name: hostpath-writer, namespace: node-t}
spec:
  nodeName: $KMM_NODE_NAME
  restartPolicy: Never
  containers:
  - name: writer
    image: $KMM_NODE_BUSYBOX_IMAGE
    command: ["/bin/sh", "-c", "echo $TOKEN > /host/token && uname -r > /host/kernel && echo wrote $TOKEN"]
    volumeMounts: [{name: host, mountPath: /host}]
  volumes:
  - name: host
    hostPath: {path: /var/lib/kmm-node-test, type: DirectoryOrCreate}
POD
		WHY="kubectl apply: $(tail -n 2 "$WORK/pod.log" | tr '\n' ' ')"
		return 1
	}
	local t phase
	t=$(date +%s.%N)
	for _ in $(seq 300); do
		phase=$(jp pod hostpath-writer node-t '{.status.phase}')
		case $phase in Succeeded | Failed) break ;; esac
		sleep 1
	done
	WHY="pod phase '$phase': $(kubectl get pod hostpath-writer -n node-t -o jsonpath='{.status.containerStatuses[*].state}' 2>&1 | head -c 400); events: $(kubectl get events -n node-t --no-headers 2>&1 | tail -n 4 | tr '\n' ' ' | head -c 600)"
	[ "$phase" = Succeeded ] || return 1
	NOTE="apply to Succeeded $(secs "$t") s"
}

t_pod_hostpath() {
	local got kernel
	got=$(gexec cat /var/lib/kmm-node-test/token 2>&1)
	kernel=$(gexec cat /var/lib/kmm-node-test/kernel 2>&1)
	WHY="guest /var/lib/kmm-node-test/token '$got' (want '$TOKEN'), kernel seen by the pod '$kernel'"
	[ "$got" = "$TOKEN" ] && [ "$kernel" = "$(gexec uname -r)" ]
}

# The kubelet lists pulled images in the Node's status at its next status
# update (every 10 s here), which may come after the pod has finished.
t_pod_images() {
	local images
	for _ in $(seq 40); do
		images=$(jp node "$KMM_NODE_NAME" "" '{range .status.images[*]}{.names}{"\n"}{end}')
		echo "$images" | grep -qF "\"$KMM_NODE_BUSYBOX_IMAGE\"" && echo "$images" | grep -qF "\"$KMM_NODE_PAUSE_IMAGE\"" &&
			return 0
		sleep 1
	done
	WHY="node status images after 40 s: $(echo "$images" | tr '\n' ' ' | head -c 500)"
	return 1
}

t_pod_logs() {
	local out
	out=$(kubectl logs -n node-t hostpath-writer 2>&1)
	WHY="kubectl logs: '$out'"
	[ "$out" = "wrote $TOKEN" ]
}

# A pod on the pod network calls the apiserver as in-cluster clients do:
# KUBERNETES_SERVICE_HOST/PORT from the kubelet, the CA and the token the
# kubelet projected. QEMU forwards the Service's address to the apiserver;
# the answer names the pod's service account.
t_pod_apiserver() {
	kubectl apply -f - >"$WORK/pod-api.log" 2>&1 <<POD || {
apiVersion: v1
kind: Pod
metadata: {name: incluster, namespace: node-t}
spec:
  nodeName: $KMM_NODE_NAME
  restartPolicy: Never
  containers:
  - name: client
    image: $KMM_NODE_BUSYBOX_IMAGE
    command:
    - /bin/sh
    - -c
    - >-
      busybox ip -4 addr show eth0 | busybox grep inet;
      exec incluster \$KUBERNETES_SERVICE_HOST \$KUBERNETES_SERVICE_PORT POST
      /apis/authentication.k8s.io/v1/selfsubjectreviews
      /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
      /var/run/secrets/kubernetes.io/serviceaccount/token
      '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}'
POD
		WHY="kubectl apply: $(tail -n 2 "$WORK/pod-api.log" | tr '\n' ' ')"
		return 1
	}
	local phase out
	for _ in $(seq 240); do
		phase=$(jp pod incluster node-t '{.status.phase}')
		case $phase in Succeeded | Failed) break ;; esac
		sleep 1
	done
	out=$(kubectl logs -n node-t incluster 2>&1)
	WHY="pod phase '$phase', output: $(echo "$out" | tr '\n' ' ' | head -c 600)"
	[ "$phase" = Succeeded ] && echo "$out" | grep -q '"username":"system:serviceaccount:node-t:default"' || return 1
	NOTE="pod $(echo "$out" | sed -n 's/.*inet \([0-9.]*\).*/\1/p') -> 10.96.0.1:443 as system:serviceaccount:node-t:default"
}

t_proc_modules() {
	local mods
	mods=$(gexec cat /proc/modules) || {
		WHY="cat /proc/modules failed"
		return 1
	}
	WHY="/proc/modules: $(echo "$mods" | cut -d' ' -f1 | tr '\n' ' ')"
	# bridge and veth were loaded for the CNI bridge, virtio_net for the NIC.
	echo "$mods" | grep -q '^bridge ' && echo "$mods" | grep -q '^veth ' && echo "$mods" | grep -q '^virtio_net ' || return 1
	NOTE="$(echo "$mods" | wc -l) modules"
}

# What kmm watches for: the same Node object with a new boot ID, Ready again.
t_reboot() {
	local uid old new guest
	uid=$(jp node "$KMM_NODE_NAME" "" '{.metadata.uid}')
	old=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.bootID}')
	"$NODE" reboot >"$WORK/reboot.log" 2>&1 || {
		WHY="node reboot: $(tail -n 3 "$WORK/reboot.log" | tr '\n' ' ')"
		return 1
	}
	new=$(jp node "$KMM_NODE_NAME" "" '{.status.nodeInfo.bootID}')
	guest=$(gexec cat /proc/sys/kernel/random/boot_id)
	WHY="Node uid $uid -> $(jp node "$KMM_NODE_NAME" "" '{.metadata.uid}'), bootID $old -> $new, guest boot_id $guest, Ready=$(jp node "$KMM_NODE_NAME" "" '{.status.conditions[?(@.type=="Ready")].status}')"
	[ "$(jp node "$KMM_NODE_NAME" "" '{.metadata.uid}')" = "$uid" ] && [ "$new" != "$old" ] && [ "$new" = "$guest" ] &&
		[ "$(jp node "$KMM_NODE_NAME" "" '{.status.conditions[?(@.type=="Ready")].status}')" = True ] || return 1
	NOTE="$(sed -n 's/.*rebooted: //p' "$WORK/reboot.log")"
}

t_down() {
	local pid
	pid=$(sed -n 's/^NODE_QEMU_PID=//p' "$KMM_NODE_DIR/state")
	"$NODE" down >"$WORK/down.log" 2>&1 || {
		WHY="node down: $(tail -n 2 "$WORK/down.log" | tr '\n' ' ')"
		return 1
	}
	# QEMU's parent (node up) is gone: a zombie left for another reaper
	# has exited all the same.
	WHY="QEMU pid $pid still runs"
	[ ! -e "/proc/$pid" ] || [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" = Z ] || return 1
	WHY="Node $KMM_NODE_NAME still exists"
	for _ in $(seq 20); do
		kubectl get node "$KMM_NODE_NAME" >/dev/null 2>&1 || return 0
		sleep 0.5
	done
	return 1
}

step build t_build
step testenv-up t_testenv_up
step boot t_boot
step join t_join
check node-identity t_node_identity
check node-runtime t_node_runtime
check node-address-lease t_node_address_lease
# The pod's failure leaves the node itself to be checked and stopped.
BEFORE_POD=$BROKEN
step pod-succeeded t_pod_succeeded
check pod-hostpath-on-node t_pod_hostpath
check pod-images-from-registry t_pod_images
check pod-logs t_pod_logs
check pod-reaches-apiserver t_pod_apiserver
BROKEN=$BEFORE_POD
check proc-modules t_proc_modules
check reboot t_reboot
check down t_down
