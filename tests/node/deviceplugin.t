#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm's device plugin on the real node (tests/node/node): kmm installed as
# kmm.t installs it (tests/node/kmm-suite.sh), then a Module with a
# moduleLoader (tests/vm's vmk_a in a kmod image) and a devicePlugin running
# Kubernetes' own sample device plugin (k8s.io/kubernetes/test/images/
# sample-device-plugin, built by tests/node/lib.sh, FROM scratch), which
# serves two devices of example.com/resource. Asserted on the guest and
# through the API:
#   - the DaemonSet kmm creates runs its pod on the node, from that image;
#   - the node's <ns>.<name>.device-plugin-ready label;
#   - the kubelet accepted the registration: example.com/resource is 2 in
#     the Node's capacity and allocatable, and the plugin's socket is in the
#     guest's /var/lib/kubelet/device-plugins;
#   - a pod asking for 1 example.com/resource is scheduled there and runs to
#     Succeeded with the device the plugin's Allocate mounted;
#   - the Module deleted: the DaemonSet and its pod gone, the kubelet's
#     allocatable example.com/resource 0, the module unloaded, the Module
#     gone; the capacity 0 once the kubelet's grace period for a plugin that
#     left (5 minutes) is over.
# A missing tool or a failed step fails every case after it.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv
NS_KMM=kmm-operator-system
NS=kmm-dp-t
RESOURCE=example.com/resource

SHARES_NODE=1
SUITE_TAG=deviceplugin
export KMM_NODE_NAME=kmm-node-d$$
# shellcheck source=tests/node/kmm-suite.sh
. "$SRC/tests/node/kmm-suite.sh"
# shellcheck source=tests/node/lib.sh
. "$SRC/tests/node/lib.sh"

# vmk_a in an image with busybox's sh and cp; the sample device plugin.
t_images_dp() {
	local t
	kmod_tree a vmk_a && kmod_shell a || why "cannot lay out the kmod image" || return 1
	"$TESTENV" image push "$WORK/kmod/a" "kmm-dp-t/kmod-a:$KVER" >"$WORK/push-a.log" 2>&1 ||
		why "testenv image push kmod-a: $(tail -n 3 "$WORK/push-a.log")" || return 1
	KMOD_REG=$KMM_NODE_GUEST_REGISTRY/kmm-dp-t
	t=$(date +%s.%N)
	node_push_sample_device_plugin "$KMM_TESTENV_REGISTRY" || why "$NODE_ERR" || return 1
	# the guest's name of the registry, as the Modules' images
	DP_IMAGE=$KMM_NODE_GUEST_REGISTRY/$NODE_SAMPLE_DP_IMAGE
	NOTE="$DP_IMAGE (built or cached, pushed in $(secs "$t") s)"
}

# The device plugin's DaemonSets and pods of Module dp (kmm's labels).
DP_SEL=kmm.node.kubernetes.io/role=device-plugin,kmm.node.kubernetes.io/module.name=dp
dp_trouble() {
	echo "daemonsets: $(kubectl get ds -n "$NS" -l "$DP_SEL" -o wide --no-headers 2>&1 | tr '\n' ' ' | head -c 600)"
	echo "plugin pods: $(kubectl get pods -n "$NS" -l "$DP_SEL" -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.status.containerStatuses[*].state}{"\n"}{end}' 2>&1 | head -c 900)"
	echo "plugin log: $(kubectl logs -n "$NS" -l "$DP_SEL" --tail 5 2>&1 | tr '\n' ' ' | head -c 900)"
	module_trouble
}
resource() { jp node "$KMM_NODE_NAME" "" "{.status.$1.example\.com/resource}"; }

t_module() {
	local t
	kubectl create namespace "$NS" >/dev/null 2>&1
	t=$(date +%s.%N)
	apply_module dp kmod-a vmk_a "" "  devicePlugin:
    container:
      image: $DP_IMAGE" || why "kubectl apply: $(tail -n 3 "$WORK/module-dp.log")" || return 1
	until_ 600 loaded vmk_a || why "vmk_a not in the guest's /proc/modules after 600 s; $(module_trouble)" || return 1
	until_ 120 has_label dp || why "no ready label for dp" || return 1
	NOTE="Module apply to loaded $(secs "$t") s"
}

t_plugin_pod() {
	local t ds pods
	t=$(date +%s.%N)
	until_ 120 eval 'ds=$(kubectl get ds -n "$NS" -l "$DP_SEL" -o jsonpath="{.items[*].metadata.name}" 2>/dev/null); [ -n "$ds" ]' ||
		why "no device plugin DaemonSet of dp after 120 s; $(dp_trouble)" || return 1
	[ "$(wc -w <<<"$ds")" = 1 ] || why "more than one DaemonSet: $ds" || return 1
	# Running on the node, from the plugin's image, and Ready
	until_ 600 eval 'pods=$(kubectl get pods -n "$NS" -l "$DP_SEL" -o jsonpath="{range .items[*]}{.spec.nodeName} {.status.phase} {.spec.containers[0].image} {.status.containerStatuses[0].ready}{\"\n\"}{end}" 2>/dev/null)
		[ "$pods" = "$KMM_NODE_NAME Running $DP_IMAGE true" ]' ||
		why "no Ready device plugin pod on $KMM_NODE_NAME after 600 s: '$pods'; $(dp_trouble)" || return 1
	[ "$(jp ds "$ds" "$NS" '{.status.numberReady}')" = 1 ] ||
		until_ 60 eval '[ "$(jp ds "$ds" "$NS" "{.status.numberReady}")" = 1 ]' ||
		why "DaemonSet $ds: numberReady $(jp ds "$ds" "$NS" '{.status.numberReady}')" || return 1
	DS=$ds
	NOTE="DaemonSet $ds, pod Running and Ready $(secs "$t") s after the module loaded"
}

t_ready_label() {
	until_ 120 eval 'jp node "$KMM_NODE_NAME" "" "{.metadata.labels}" | grep -qF "\"kmm.node.kubernetes.io/$NS.dp.device-plugin-ready\":"' ||
		why "no $NS.dp.device-plugin-ready label: $(jp node "$KMM_NODE_NAME" "" '{.metadata.labels}')" || return 1
}

t_registered() {
	until_ 120 eval '[ "$(resource capacity)" = 2 ] && [ "$(resource allocatable)" = 2 ]' ||
		why "$RESOURCE: capacity '$(resource capacity)', allocatable '$(resource allocatable)' (want 2 and 2);" \
			"kubelet: $("$NODE" logs kubelet 2>&1 | grep -i 'device\|plugin' | tail -n 5 | tr '\n' ' ' | head -c 900)" || return 1
	NOTE="capacity and allocatable $RESOURCE: 2"
}

t_socket() {
	local ls
	ls=$(gexec 'ls -l /var/lib/kubelet/device-plugins') || why "ls in the guest: $ls" || return 1
	# kubelet.sock (the kubelet's registration socket) and dp.<unix time> (the plugin's), both sockets
	grep -qE '^s.* kubelet\.sock$' <<<"$ls" && grep -qE '^s.* dp\.[0-9]+$' <<<"$ls" ||
		why "want the sockets kubelet.sock and dp.<time> in /var/lib/kubelet/device-plugins: $ls" || return 1
	NOTE="$(grep -oE 'dp\.[0-9]+$' <<<"$ls")"
}

# The sample plugin's Allocate answers with a mount of /tmp/Dev-<n> (the
# kubelet calls it when the pod is admitted); the pod lists it.
t_pod_device() {
	local t phase out
	t=$(date +%s.%N)
	kubectl apply -f - >"$WORK/consumer.log" 2>&1 <<P || why "kubectl apply: $(tail -n 3 "$WORK/consumer.log")" || return 1
apiVersion: v1
kind: Pod
metadata: {name: consumer, namespace: $NS}
spec:
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: $KMM_NODE_NAME}
  containers:
  - name: c
    image: $KMM_NODE_BUSYBOX_IMAGE
    command: [sh, -c, 'ls -d /tmp/Dev-*']
    resources:
      limits: {$RESOURCE: 1}
P
	until_ 300 eval 'phase=$(jp pod consumer "$NS" "{.status.phase}"); [ "$phase" = Succeeded ] || [ "$phase" = Failed ]'
	[ "$phase" = Succeeded ] || why "consumer pod: phase '$phase' after 300 s: $(jp pod consumer "$NS" '{.status}' | head -c 900)" ||
		return 1
	[ "$(jp pod consumer "$NS" '{.spec.nodeName}')" = "$KMM_NODE_NAME" ] || why "scheduled on $(jp pod consumer "$NS" '{.spec.nodeName}')" ||
		return 1
	out=$(kubectl logs -n "$NS" consumer 2>&1)
	grep -qxE '/tmp/Dev-[12]' <<<"$out" || why "the pod does not see the allocated device: '$out'" || return 1
	NOTE="scheduled and Succeeded in $(secs "$t") s, saw $out"
	kubectl delete pod -n "$NS" consumer --wait=false >/dev/null 2>&1
}

# The kubelet drops a plugin's allocatable to 0 as soon as its socket goes,
# and keeps the devices in capacity, unhealthy, for endpointStopGracePeriod
# (5 minutes, pkg/kubelet/cm/devicemanager) before it sets the capacity to 0.
t_deleted() {
	local t
	t=$(date +%s.%N)
	kubectl delete module -n "$NS" dp --wait=false >/dev/null 2>&1 || why "kubectl delete module failed" || return 1
	until_ 120 eval '[ -z "$(kubectl get ds -n "$NS" -l "$DP_SEL" -o name 2>/dev/null)" ] && ! kubectl get ds -n "$NS" "$DS" >/dev/null 2>&1' ||
		why "DaemonSet still there 120 s after the delete; $(dp_trouble)" || return 1
	until_ 180 eval '[ -z "$(kubectl get pods -n "$NS" -l "$DP_SEL" -o name 2>/dev/null)" ]' ||
		why "the device plugin pod still there; $(dp_trouble)" || return 1
	PLUGIN_GONE=$(date +%s.%N)
	until_ 120 eval 'a=$(resource allocatable); [ -z "$a" ] || [ "$a" = 0 ]' ||
		why "$RESOURCE allocatable still '$(resource allocatable)' 120 s after the plugin left" || return 1
	until_ 300 unloaded vmk_a || why "vmk_a still loaded; $(module_trouble)" || return 1
	until_ 120 eval '! kubectl get module -n "$NS" dp >/dev/null 2>&1' || why "the Module is still there" || return 1
	! gexec 'ls /var/lib/kubelet/device-plugins' | grep -qE '^dp\.[0-9]+$' || why "the plugin's socket is still on the node" ||
		return 1
	NOTE="DaemonSet and pod gone, allocatable 0 (capacity '$(resource capacity)'), unloaded, Module gone $(secs "$t") s after the delete"
}

t_capacity() {
	until_ 420 eval 'c=$(resource capacity); [ -z "$c" ] || [ "$c" = 0 ]' ||
		why "$RESOURCE capacity still '$(resource capacity)' 420 s after the plugin left" || return 1
	NOTE="capacity '$(resource capacity)' $(secs "$PLUGIN_GONE") s after the plugin pod was gone"
}

shared_step prerequisites t_prereq
shared_step kmod-build t_kmod_build
shared_step testenv-up t_testenv_up
shared_step node-up t_node_up
shared_step images-pushed t_images
step kmod-and-plugin-images-pushed t_images_dp
shared_step install t_install
shared_step operator-and-webhook-running t_running
step module-loaded t_module
step plugin-pod-running t_plugin_pod
check device-plugin-ready-label t_ready_label
check kubelet-registered t_registered
check plugin-socket-on-node t_socket
check pod-gets-device t_pod_device
step module-deleted-plugin-gone t_deleted
check kubelet-capacity-dropped t_capacity
finish
