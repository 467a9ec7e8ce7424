#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# docs/cookbook followed on the real node (tests/node/node): kmm installed as
# kmm.t installs it (tests/node/kmm-suite.sh), then the pages prebuilt.md,
# node-selection.md, per-kernel.md, several-kmods.md and firmware.md, one
# after the other, each from its label to its undo. Every command and
# manifest comes from the page (the blocks marked <!-- recipe: PAGE/STEP -->,
# extracted by tests/node/recipe.py); only the pages' example values are
# replaced (docs/cookbook/README.md): the registry
# registry.example.com/drivers by the guest's address of the testenv
# registry, worker-1 by the real node, worker-2 by a simulated node (kwok)
# on Debian 13's kernel, `registryTLS: {insecure: false}` by true (the
# registry is plain HTTP), and in per-kernel's plan the example kernel by the
# guest's. Shell blocks run on the host with the testenv's kubectl and
# kmmctl, in a directory holding the page's manifests; blocks shown "on the
# node" run in the guest. After each step the suite asserts on the guest
# (/proc/modules, /sys/module, dmesg, files) and through the API; each
# page's undo must leave no vmk_ module loaded and no Module behind, so the
# next page starts clean. Each recipe's apply -> loaded time is in its
# case's comment. A missing tool or a failed step fails every case after it.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv
NS_KMM=kmm-operator-system
NS=default
BOOK=$SRC/docs/cookbook
KMMCTL_DIR=${KMM_IMAGES_BUILD:-$SRC/build/release}/src/cli
# per-kernel.md's second kernel, on a simulated node, and one no mapping matches
KERNEL_NEXT=6.12.38+deb13-amd64
KERNEL_OLD=5.10.0-35-amd64

SHARES_NODE=1
SUITE_TAG=cookbook
export KMM_NODE_NAME=${KMM_NODE_NAME:-kmm-node-c$$}
# shellcheck source=tests/node/kmm-suite.sh
. "$SRC/tests/node/kmm-suite.sh"

TIMES=()

# The kmod images the pages name, pushed as registry.example.com/drivers/...
# stands for: vmk-a the upstream way (busybox's sh and cp in it), the rest
# FROM scratch; vmk-a-next only for the simulated node's kernel.
t_kmod_images() {
	local a d=$WORK/kmod/next/opt/lib/modules/$KERNEL_NEXT/extra
	kmod_tree vmk-a vmk_a && kmod_shell vmk-a && kmod_tree vmk-multi vmk_a vmk_b vmk_o1 vmk_o2 &&
		kmod_tree vmk-fw vmk_fw || why "cannot lay out the kmod images" || return 1
	mkdir -p "$WORK/kmod/vmk-fw/firmware" "$d" && cp "$MOD_DIR/vmk_a.ko" "$d/" &&
		depmod -b "$WORK/kmod/next/opt" "$KERNEL_NEXT" 2>/dev/null || return 1
	printf 'VMK firmware blob from the cookbook\n' >"$WORK/kmod/vmk-fw/firmware/vmk-test.bin"
	for a in vmk-a vmk-multi vmk-fw; do
		"$TESTENV" image push "$WORK/kmod/$a" "drivers/$a:$KVER" >"$WORK/push-$a.log" 2>&1 ||
			why "testenv image push $a: $(tail -n 3 "$WORK/push-$a.log")" || return 1
	done
	# kmm's tag for a kernel with a '+': '_' (docs/cookbook/per-kernel.md)
	"$TESTENV" image push "$WORK/kmod/next" "drivers/vmk-a-next:${KERNEL_NEXT//+/_}" >"$WORK/push-next.log" 2>&1 ||
		why "testenv image push vmk-a-next: $(tail -n 3 "$WORK/push-next.log")" || return 1
	REG_GUEST=$KMM_NODE_GUEST_REGISTRY/drivers
}

# Every page's marked blocks, with the example values replaced, in
# $WORK/book/<page>/<step> (manifests under the file names the pages give).
PAGES=(prebuilt node-selection per-kernel several-kmods firmware)
t_extract() {
	local p subs out
	[ -x "$KMMCTL_DIR/kmmctl" ] || why "no kmmctl in $KMMCTL_DIR (set KMM_IMAGES_BUILD to a built release tree)" || return 1
	W2=cb-worker-2-$$
	W3=cb-worker-3-$$
	for p in "${PAGES[@]}"; do
		subs=(-s "registry.example.com/drivers=$REG_GUEST" -s "worker-1=$KMM_NODE_NAME" -s "insecure: false}=insecure: true}")
		[ "$p" = per-kernel ] && subs+=(-s "worker-2=$W2" -s "6.1.0-57-amd64=$KVER")
		out=$(python3 "$SRC/tests/node/recipe.py" write "$BOOK/$p.md" "$WORK/book" "${subs[@]}" 2>&1) ||
			why "recipe.py write $p.md: $out" || return 1
	done
	local want=(prebuilt/label prebuilt/vmk-a.yaml prebuilt/apply prebuilt/check prebuilt/on-node prebuilt/undo
		node-selection/vmk-select.yaml node-selection/apply node-selection/label node-selection/nmc
		node-selection/unlabel node-selection/undo per-kernel/vmk-per-kernel.yaml per-kernel/plan
		per-kernel/apply per-kernel/check per-kernel/undo several-kmods/vmk-multi.yaml several-kmods/apply
		several-kmods/on-node several-kmods/undo firmware/vmk-fw.yaml firmware/apply firmware/on-node
		firmware/undo) missing=() b
	for b in "${want[@]}"; do [ -f "$WORK/book/$b" ] || missing+=("$b"); done
	[ ${#missing[@]} -eq 0 ] || why "blocks missing from the pages: ${missing[*]}" || return 1
	NOTE="$(find "$WORK/book" -type f | wc -l) blocks from ${#PAGES[@]} pages"
}

# run PAGE/STEP: the shell block, in the page's directory, as a user runs it
# (bash -e; the testenv's kubectl and kmmctl on PATH); output in $OUT.
run() {
	OUT=$(cd "$WORK/book/${1%/*}" && PATH=$KMMCTL_DIR:$PATH timeout 600 bash -eo pipefail "${1##*/}" 2>&1)
	local rc=$?
	printf '%s\n' "$OUT" >"$WORK/book/$1.out"
	[ $rc -eq 0 ] || why "$1 exited $rc: $(tail -n 6 <<<"$OUT")" "$(module_trouble)"
}
# on_node PAGE/STEP: the block run in the guest; output in $OUT.
on_node() {
	OUT=$(gexec "$(cat "$WORK/book/$1")" 2>&1)
	local rc=$?
	printf '%s\n' "$OUT" >"$WORK/book/$1.out"
	[ $rc -eq 0 ] || why "$1 on the node exited $rc: $(tail -n 6 <<<"$OUT")"
}
# A clean node before a page: no test module loaded, no Module; dmesg cleared
# so that the page's lines are the only ones.
clean_start() {
	local l
	l=$(gexec "grep -o '^vmk_[a-z0-9_]*' /proc/modules" 2>/dev/null | tr '\n' ' ')
	[ -z "$l" ] || why "loaded before the page: $l" || return 1
	l=$(kubectl get modules -A --no-headers 2>/dev/null)
	[ -z "$l" ] || why "Modules before the page: $l" || return 1
	gexec 'dmesg -c >/dev/null'
}
all_unloaded() {
	local m
	for m in "$@"; do unloaded "$m" || return 1; done
}
module_gone() { ! kubectl get module -n "$NS" "$1" >/dev/null 2>&1; }
no_label() { ! has_label "$1"; }
# loaded_after T0 NAME MODULE...: waits for the modules, records NAME's time.
loaded_after() {
	local t0=$1 name=$2 m
	shift 2
	for m in "$@"; do
		until_ 600 loaded "$m" || why "$m not loaded; $(module_trouble)" || return 1
	done
	LOADED_S=$(secs "$t0")
	TIMES+=("$name $LOADED_S s")
}
# undone PAGE/STEP MODULE-NAME KMOD...: the page's undo, then nothing left.
undone() {
	local t step=$1 name=$2
	shift 2
	t=$(date +%s.%N)
	run "$step" || return 1
	until_ 120 module_gone "$name" || why "Module $name still there after $step" || return 1
	until_ 300 all_unloaded "$@" || why "still loaded after $step: $(gexec "grep '^vmk_' /proc/modules")" || return 1
	until_ 60 no_label "$name" || why "the ready label of $name is still on the node" || return 1
	[ -z "$(jp node "$KMM_NODE_NAME" "" '{.metadata.labels.kmm\.example\.com/vmk}')" ] ||
		why "kmm.example.com/vmk is still on the node" || return 1
	NOTE="undo to unloaded and gone $(secs "$t") s"
}

# What a failed page may leave: Modules, the pages' labels, simulated nodes.
reset_node() {
	kubectl delete modules -n "$NS" --all --timeout=300s >/dev/null 2>&1
	kubectl label node "$KMM_NODE_NAME" kmm.example.com/vmk- kmm.example.com/vmk-card- >/dev/null 2>&1
	[ -n "${W2:-}" ] && "$TESTENV" nodes remove "$W2" "$W3" >/dev/null 2>&1
	until_ 300 all_unloaded vmk_a vmk_b vmk_o1 vmk_o2 vmk_fw
	echo "# after a failed page: Modules deleted, labels removed; loaded now: $(gexec "grep -o '^vmk_[a-z0-9_]*' /proc/modules" | tr '\n' ' ')"
}

# ---------------------------------------------------------------- prebuilt.md

t_prebuilt_loaded() {
	local t0
	clean_start || return 1
	run prebuilt/label || return 1
	t0=$(date +%s.%N)
	run prebuilt/apply || return 1
	loaded_after "$t0" prebuilt vmk_a || return 1
	grep -qE '^vmk-a +1 +1 ' <<<"$OUT" || why "kubectl get module after the wait: $OUT" || return 1
	NOTE="apply to loaded $LOADED_S s (first pulls of kmm-worker and the image)"
}
# The label and the event come with the status that ended the wait, not
# necessarily before it: the block is run again for up to a minute.
prebuilt_checked() {
	run prebuilt/check && grep -q "^$KMM_NODE_NAME " <<<"$OUT" &&
		grep -q "node/$KMM_NODE_NAME .*Module default/vmk-a loaded" <<<"$OUT"
}
t_prebuilt_label_event() {
	until_ 60 prebuilt_checked || why "want the node listed by the ready label and a ModuleLoaded event for vmk-a: $OUT" ||
		return 1
}
t_prebuilt_on_node() {
	on_node prebuilt/on-node || return 1
	grep -qE '^vmk_a +[0-9]+ +0' <<<"$OUT" && grep -q 'vmk_a: loaded' <<<"$OUT" ||
		why "lsmod and dmesg on the node: $OUT" || return 1
}
t_prebuilt_undone() {
	undone prebuilt/undo vmk-a vmk_a || return 1
	gexec dmesg | grep -q 'vmk_a: unloaded' || why "no 'vmk_a: unloaded' in dmesg"
}

# ---------------------------------------------------------------- node-selection.md

# st: vmk-select's matching and desired counts and Ready message, once written.
sel_status() {
	st=$(jp module vmk-select "$NS" '{.status.moduleLoader.nodesMatchingSelectorNumber} {.status.moduleLoader.desiredNumber} {.status.conditions[?(@.type=="Ready")].message}')
	[ -n "${st#* * }" ]
}
t_sel_unmatched() {
	local st
	clean_start || return 1
	run node-selection/apply || return 1
	# kmm has looked at it (its status is written), and still nothing on the node
	until_ 60 sel_status || why "no status on vmk-select after 60 s: '$st'" || return 1
	[ "${st%% *}" = 0 ] || why "status: $st (want 0 matching nodes)" || return 1
	sleep 10
	! loaded vmk_a || why "vmk_a loaded on a node the selector does not match" || return 1
	[ -z "$(jp nmc "$KMM_NODE_NAME" "" '{.spec.modules[?(@.name=="vmk-select")].name}')" ] ||
		why "the node's NodeModulesConfig has vmk-select" || return 1
	[ -z "$(kubectl get pods -n "$NS" --no-headers 2>/dev/null)" ] || why "pods: $(kubectl get pods -n "$NS" --no-headers)" ||
		return 1
	NOTE="status: ${st}; nothing on the node 10 s later"
}
t_sel_labelled() {
	local t0
	t0=$(date +%s.%N)
	run node-selection/label || return 1
	loaded_after "$t0" node-selection vmk_a || return 1
	until_ 60 has_label vmk-select || why "no ready label for vmk-select" || return 1
	run node-selection/nmc || return 1
	grep -qE "^$KMM_NODE_NAME +vmk-select +vmk-select " <<<"$OUT" || why "kubectl get nmc: $OUT" || return 1
	NOTE="label to loaded $LOADED_S s"
}
t_sel_unlabelled() {
	local t
	t=$(date +%s.%N)
	run node-selection/unlabel || return 1
	until_ 300 unloaded vmk_a || why "vmk_a still loaded 300 s after the label went; $(module_trouble)" || return 1
	until_ 60 no_label vmk-select || why "the ready label is still there" || return 1
	kubectl get module -n "$NS" vmk-select >/dev/null 2>&1 || why "the Module went too" || return 1
	NOTE="label removed to unloaded $(secs "$t") s"
}
t_sel_undone() { undone node-selection/undo vmk-select vmk_a; }

# ---------------------------------------------------------------- per-kernel.md

t_pk_plan() {
	run per-kernel/plan || return 1
	grep -qF "$REG_GUEST/vmk-a:$KVER" <<<"$OUT" && grep -qF "$REG_GUEST/vmk-a-next:${KERNEL_NEXT//+/_}" <<<"$OUT" &&
		grep -qE "^default/vmk-per-kernel +- +$KERNEL_OLD +none " <<<"$OUT" ||
		why "kmmctl plan: $OUT" || return 1
}
nmc_image() { jp nmc "$1" "" '{.spec.modules[?(@.name=="vmk-per-kernel")].config.containerImage}'; }
t_pk_mappings() {
	local t0 out st
	clean_start || return 1
	# worker-2 of the page, and a node on a kernel no mapping matches
	"$TESTENV" nodes add "$W2" --kernel "$KERNEL_NEXT" >"$WORK/kwok.log" 2>&1 &&
		"$TESTENV" nodes add "$W3" --kernel "$KERNEL_OLD" --label kmm.example.com/vmk=true >>"$WORK/kwok.log" 2>&1 ||
		why "testenv nodes add: $(tail -n 3 "$WORK/kwok.log")" || return 1
	t0=$(date +%s.%N)
	run per-kernel/apply || return 1
	loaded_after "$t0" per-kernel vmk_a || return 1
	run per-kernel/check || return 1
	out=$OUT
	[ "$(printf '%s\n' "$KMM_NODE_NAME	$KVER	$REG_GUEST/vmk-a:$KVER" "$W2	$KERNEL_NEXT	$REG_GUEST/vmk-a-next:${KERNEL_NEXT//+/_}")" = "$out" ] ||
		why "the NodeModulesConfigs say: $out" || return 1
	[ -z "$(nmc_image "$W3")" ] || why "$W3 ($KERNEL_OLD) got $(nmc_image "$W3")" || return 1
	st=$(jp module vmk-per-kernel "$NS" '{.status.moduleLoader.desiredNumber} {.status.moduleLoader.availableNumber}')
	[ "$st" = "2 2" ] || why "Module status desired/available: '$st' (want 2 2)" || return 1
	until_ 60 has_label vmk-per-kernel || why "no ready label on the real node" || return 1
	NOTE="apply to loaded on the real node $LOADED_S s; $W2 got vmk-a-next, $W3 nothing; desired/available 2 2"
}
t_pk_undone() {
	undone per-kernel/undo vmk-per-kernel vmk_a || return 1
	[ -z "$(nmc_image "$W2")" ] || why "$W2 still has vmk-per-kernel" || return 1
	"$TESTENV" nodes remove "$W2" "$W3" >>"$WORK/kwok.log" 2>&1 || why "testenv nodes remove failed" || return 1
}

# ---------------------------------------------------------------- several-kmods.md

t_multi_loaded() {
	local t0 order p
	clean_start || return 1
	t0=$(date +%s.%N)
	run several-kmods/apply || return 1
	loaded_after "$t0" several-kmods vmk_o2 vmk_o1 vmk_a vmk_b || return 1
	on_node several-kmods/on-node || return 1
	order=$(grep -oE 'vmk_[a-z0-9]+: loaded' <<<"$OUT" | cut -d: -f1 | tr '\n' ' ')
	[ "$order" = "vmk_o2 vmk_o1 vmk_a vmk_b " ] || why "dmesg order '$order' (want vmk_o2 vmk_o1 vmk_a vmk_b): $OUT" || return 1
	grep -qE "^vmk_a +[0-9]+ +1 vmk_b" <<<"$OUT" || why "lsmod does not show vmk_b using vmk_a: $OUT" || return 1
	grep -q "vmk_b: loaded, vmk_a_add(40, 2) = 42, greeting 'cookbook'" <<<"$OUT" || why "vmk_b's parameters: $OUT" || return 1
	p=$(gexec 'cat /sys/module/vmk_b/parameters/answer /sys/module/vmk_b/parameters/greeting' | tr '\n' ' ')
	[ "$p" = "40 cookbook " ] || why "/sys/module/vmk_b/parameters: $p" || return 1
	NOTE="apply to loaded $LOADED_S s; dmesg: $order"
}
t_multi_undone() { undone several-kmods/undo vmk-multi vmk_b vmk_o1 vmk_o2 vmk_a; }

# ---------------------------------------------------------------- firmware.md

t_fw_loaded() {
	local t0 size
	clean_start || return 1
	gexec 'rm -f /lib/firmware/vmk-test.bin'
	t0=$(date +%s.%N)
	run firmware/apply || return 1
	loaded_after "$t0" firmware vmk_fw || return 1
	on_node firmware/on-node || return 1
	size=$(wc -c <"$WORK/kmod/vmk-fw/firmware/vmk-test.bin")
	grep -q "vmk_fw: got vmk-test.bin, $size bytes, starts with 'VMK firmware blo'" <<<"$OUT" ||
		why "vmk_fw's request_firmware() did not get the image's file: $OUT" || return 1
	[ "$(gexec cat /lib/firmware/vmk-test.bin)" = "$(cat "$WORK/kmod/vmk-fw/firmware/vmk-test.bin")" ] ||
		why "/lib/firmware/vmk-test.bin on the node is not the image's" || return 1
	NOTE="apply to loaded $LOADED_S s; request_firmware() got $size bytes"
}
t_fw_undone() {
	undone firmware/undo vmk-fw vmk_fw || return 1
	until_ 60 eval '! gexec "test -e /lib/firmware/vmk-test.bin"' || why "/lib/firmware/vmk-test.bin is still on the node" ||
		return 1
}

shared_step prerequisites t_prereq
shared_step kmod-build t_kmod_build
shared_step testenv-up t_testenv_up
shared_step node-up t_node_up
shared_step images-pushed t_images
step kmod-images-pushed t_kmod_images
shared_step install t_install
shared_step operator-and-webhook-running t_running
step recipes-extracted t_extract
# One page that fails does not hide the next: its leftovers are removed
# (reset_node) and the next page runs, unless the install itself failed.
SETUP_BROKEN=$BROKEN
page() {
	[ -n "$SETUP_BROKEN" ] && return 0
	[ -n "$BROKEN" ] && { reset_node; BROKEN=; }
	return 0
}

page
step prebuilt-loaded t_prebuilt_loaded
check prebuilt-label-and-event t_prebuilt_label_event
check prebuilt-on-node t_prebuilt_on_node
step prebuilt-undone t_prebuilt_undone
page
step node-selection-unmatched-not-loaded t_sel_unmatched
step node-selection-labelled-loaded t_sel_labelled
step node-selection-unlabelled-unloaded t_sel_unlabelled
step node-selection-undone t_sel_undone
page
check per-kernel-plan t_pk_plan
step per-kernel-each-node-its-mapping t_pk_mappings
step per-kernel-undone t_pk_undone
page
step several-kmods-loaded-in-order t_multi_loaded
step several-kmods-undone t_multi_undone
page
step firmware-loaded t_fw_loaded
step firmware-undone t_fw_undone
echo "# apply to loaded: $(printf '%s, ' "${TIMES[@]}" | sed 's/, $//')"
finish
