#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm-worker's command line against a fake kernel (the LD_PRELOAD shim of
# tests/unit/kmod): the upstream step order, exit codes, rawArgs, SIGTERM.
# Usage: test-worker-cli.sh KMM_WORKER SHIM FIXTURES_DIR   (prints TAP)
set -u
WORKER=$1
SHIM=$2
FX=$3
KVER=9.9.9-test
ROOT=$(mktemp -d /tmp/kmm-worker-cli.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export KMM_SHIM_ROOT=$ROOT KMM_SHIM_UNAME=$KVER
n=0
fails=0

ok() { # DESCRIPTION COMMAND...
	local d=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n - $d"
	else
		echo "not ok $n - $d"
		sed 's/^/#   /' "$ROOT/out" 2>/dev/null | tail -n 8
		fails=$((fails + 1))
	fi
}
run() { # runs the worker under the shim; output in $ROOT/out, status in $RC
	LD_PRELOAD=$SHIM "$WORKER" "$@" >"$ROOT/out" 2>&1
	RC=$?
}
said() { grep -q -- "$1" "$ROOT/out"; }
loaded() { grep -q "^$1 " "$ROOT/proc/modules"; }
calls() { [ "$(tr '\n' ';' <"$ROOT/calls.log" 2>/dev/null)" = "$1" ]; }

# fake kernel state, an image (copied by "the init container" to /tmp<dirName>)
# and the host's own tree with an in-tree module
mkdir -p "$ROOT/sys/module/firmware_class/parameters" "$ROOT/proc" "$ROOT/dev" \
	"$ROOT/img/opt/lib/modules/$KVER/extra" "$ROOT/img/fw/sub" "$ROOT/lib/modules/$KVER/kernel" \
	"$ROOT/hostfw"
: >"$ROOT/sys/module/firmware_class/parameters/path"
: >"$ROOT/proc/modules"
: >"$ROOT/dev/kmsg"
cp "$FX"/fx_{a,b,o1,o2,fw}.ko "$ROOT/img/opt/lib/modules/$KVER/extra/"
cp "$FX/fx_intree.ko" "$ROOT/lib/modules/$KVER/kernel/"
PATH=/sbin:/usr/sbin:$PATH depmod -b "$ROOT/img/opt" "$KVER" 2>/dev/null
PATH=/sbin:/usr/sbin:$PATH depmod -b "$ROOT" "$KVER" 2>/dev/null
echo blob >"$ROOT/img/fw/a.bin"
echo two >"$ROOT/img/fw/sub/b.bin"

cfg() { # NAME LINES...
	local f=$ROOT/$1
	shift
	{
		echo "kernelVersion: $KVER"
		echo "containerImage: registry.invalid/kmod:$KVER"
		printf '%s\n' "$@"
	} >"$f"
}
cfg full.yaml "inTreeModulesToRemove: [fx_intree, not_on_host]" "modprobe:" "  moduleName: fx_b" \
	"  dirName: /opt" "  parameters: [x=1, y=two words]" "  firmwarePath: /fw"
cfg order.yaml "modprobe:" "  moduleName: fx_o1" "  dirName: /opt" \
	"  modulesLoadingOrder: [fx_o1, fx_o2]"
cfg raw.yaml "modprobe:" "  rawArgs:" "    load: [-v, --first-time, fx_raw, 'p=a b']" \
	"    unload: [-rv, fx_raw]"
cfg bad.yaml "modprobe:" "  moduleName: fx_a" "  bogus: 1"
cfg noname.yaml "modprobe:" "  dirName: /opt"
cfg flags.yaml "modprobe:" "  moduleName: fx_a" "  dirName: /opt" \
	"  args: {load: [--set-version, '1.0'], unload: [-v]}"
cfg onlyload.yaml "modprobe:" "  moduleName: fx_a" "  dirName: /opt" "  args: {load: [--first-time]}"
cfg onlyunload.yaml "modprobe:" "  moduleName: fx_a" "  dirName: /opt" "  args: {unload: [--wait=100]}"

echo "1..38"

run --version
ok "--version exits 0 and prints the version" eval '[ $RC = 0 ] && said "kmm-worker "'
run --no-such-flag
ok "an unknown flag exits 2" eval '[ $RC = 2 ]'
run kmod load
ok "kmod load without CONFIG exits 2" eval '[ $RC = 2 ]'
run kmod load "$ROOT/missing.yaml"
ok "a missing config exits 1 and names the file" eval '[ $RC = 1 ] && said missing.yaml'
run kmod load "$ROOT/bad.yaml" --image-root "$ROOT/img"
ok "an unknown config key is rejected (exit 1, names the key)" eval '[ $RC = 1 ] && said bogus'
run kmod load "$ROOT/noname.yaml" --image-root "$ROOT/img"
ok "a config with neither moduleName nor rawArgs is rejected (exit 1, names file and fields)" \
	eval '[ $RC = 1 ] && said "noname.yaml: modprobe: neither moduleName nor rawArgs" && ! said "(null)"'

# Upstream's load sequence, observed in the fake kernel.
LD_PRELOAD=$SHIM /bin/true # the shim itself loads
echo "fx_intree 16384 0 - Live 0x0" >>"$ROOT/proc/modules"
mkdir -p "$ROOT/sys/module/fx_intree/holders" && echo live >"$ROOT/sys/module/fx_intree/initstate" &&
	echo 0 >"$ROOT/sys/module/fx_intree/refcnt"
run kmod load "$ROOT/full.yaml" --image-root "$ROOT/img" --firmware-path "$ROOT/hostfw" \
	--host-modules "$ROOT/lib/modules"
ok "load exits 0" eval '[ $RC = 0 ]'
ok "firmware_class.path set to --firmware-path" eval '[ "$(cat "$ROOT/sys/module/firmware_class/parameters/path")" = "$ROOT/hostfw" ]'
ok "in-tree module removed, absent one skipped" eval '! loaded fx_intree && said "skipping.*not_on_host"'
ok "firmware copied (with sub-directories)" eval '[ -f "$ROOT/hostfw/a.bin" ] && [ -f "$ROOT/hostfw/sub/b.bin" ]'
ok "dependency then module, with parameters quoted as modprobe does" \
	calls 'rmmod fx_intree;insmod fx_a ;insmod fx_b x=1 y="two words";'
ok "log names the steps in order" eval 'said "removing in-tree" && said "firmware copied" && said "module loaded"'
: >"$ROOT/calls.log"
run kmod unload "$ROOT/full.yaml" --image-root "$ROOT/img" --firmware-path "$ROOT/hostfw"
ok "unload exits 0 and removes module then unused dependency" eval '[ $RC = 0 ] && calls "rmmod fx_b;rmmod fx_a;"'
ok "unload removes the firmware files it installed" eval '[ ! -e "$ROOT/hostfw/a.bin" ] && [ ! -e "$ROOT/hostfw/sub/b.bin" ]'

: >"$ROOT/calls.log"
run kmod load "$ROOT/order.yaml" --image-root "$ROOT/img"
ok "modulesLoadingOrder loads the last one first" eval '[ $RC = 0 ] && calls "insmod fx_o2 ;insmod fx_o1 ;"'
: >"$ROOT/calls.log"
run kmod unload "$ROOT/order.yaml" --image-root "$ROOT/img"
ok "modulesLoadingOrder unload removes them in list order" eval '[ $RC = 0 ] && calls "rmmod fx_o1;rmmod fx_o2;"'

# The operator writes the config as compact JSON, which the worker decodes
# with jansson; anything jansson refuses goes through the YAML parser, so both
# accept the same files and say the same about bad ones.
head='{"containerImage":"registry.invalid/kmod:'$KVER'","kernelVersion":"'$KVER'",'
echo "$head"'"modprobe":{"dirName":"/opt","moduleName":"fx_o1","modulesLoadingOrder":["fx_o1","fx_o2"]}}' >"$ROOT/order.json"
: >"$ROOT/calls.log"
run kmod load "$ROOT/order.json" --image-root "$ROOT/img"
ok "a JSON config (as the operator writes it) loads like its YAML twin" \
	eval '[ $RC = 0 ] && calls "insmod fx_o2 ;insmod fx_o1 ;"'
run kmod unload "$ROOT/order.json" --image-root "$ROOT/img"
echo "$head"'"modprobe":{"moduleName":"fx_a","bogus":1}}' >"$ROOT/bad.json"
run kmod load "$ROOT/bad.json" --image-root "$ROOT/img"
ok "an unknown key in a JSON config is rejected (exit 1, names file and key)" \
	eval '[ $RC = 1 ] && said "bad.json.*bogus"'
{ cat "$ROOT/order.json"; echo "# edited by hand"; } >"$ROOT/comment.json"
: >"$ROOT/calls.log"
run kmod load "$ROOT/comment.json" --image-root "$ROOT/img"
ok "JSON with a YAML comment after it still loads (YAML parser)" \
	eval '[ $RC = 0 ] && calls "insmod fx_o2 ;insmod fx_o1 ;"'
run kmod unload "$ROOT/comment.json" --image-root "$ROOT/img"
echo "$head"'"kernelVersion":"0.0.1","modprobe":{"moduleName":"fx_a"}}' >"$ROOT/dup.json"
run kmod load "$ROOT/dup.json" --image-root "$ROOT/img"
ok "a JSON config with a duplicate key is rejected (exit 1)" eval '[ $RC = 1 ] && said "duplicate key"'

# rawArgs: passed verbatim to modprobe (a recording stand-in here).
cat >"$ROOT/modprobe" <<EOF
#!/bin/sh
for a in "\$@"; do printf '[%s]' "\$a"; done >>"$ROOT/modprobe.args"
echo >>"$ROOT/modprobe.args"
echo "insmod /fake/fx_raw.ko"
EOF
chmod +x "$ROOT/modprobe"
KMM_MODPROBE=$ROOT/modprobe run kmod load "$ROOT/raw.yaml"
ok "rawArgs.load reaches modprobe verbatim" eval '[ $RC = 0 ] && [ "$(head -1 "$ROOT/modprobe.args")" = "[-v][--first-time][fx_raw][p=a b]" ]'
ok "modprobe's output is logged" said "insmod /fake/fx_raw.ko"
KMM_MODPROBE=$ROOT/modprobe run kmod unload "$ROOT/raw.yaml"
ok "rawArgs.unload reaches modprobe verbatim" eval '[ $RC = 0 ] && [ "$(tail -1 "$ROOT/modprobe.args")" = "[-rv][fx_raw]" ]'
# A modprobe flag libkmod has no equivalent for: modprobe runs, upstream's way.
KMM_MODPROBE=$ROOT/modprobe run kmod load "$ROOT/flags.yaml" --image-root "$ROOT/img"
ok "args.load with modprobe-only flags runs 'modprobe -vd DIR args... NAME'" \
	eval '[ "$(tail -1 "$ROOT/modprobe.args")" = "[-vd][$ROOT/img/opt][--set-version][1.0][fx_a]" ]'
# args with one list only (upstream requires neither): the other side runs without args.
: >"$ROOT/calls.log"
: >"$ROOT/modprobe.args"
KMM_MODPROBE=$ROOT/modprobe run kmod load "$ROOT/onlyload.yaml" --image-root "$ROOT/img"
ok "args.load alone: load maps --first-time and inserts through libkmod" \
	eval '[ $RC = 0 ] && calls "insmod fx_a ;" && [ ! -s "$ROOT/modprobe.args" ]'
: >"$ROOT/calls.log"
KMM_MODPROBE=$ROOT/modprobe run kmod unload "$ROOT/onlyload.yaml" --image-root "$ROOT/img"
ok "args.load alone: unload runs with no args (modprobe -r's default, through libkmod)" \
	eval '[ $RC = 0 ] && calls "rmmod fx_a;" && [ ! -s "$ROOT/modprobe.args" ]'
: >"$ROOT/calls.log"
KMM_MODPROBE=$ROOT/modprobe run kmod load "$ROOT/onlyunload.yaml" --image-root "$ROOT/img"
ok "args.unload alone: load runs with no args (through libkmod)" \
	eval '[ $RC = 0 ] && calls "insmod fx_a ;" && [ ! -s "$ROOT/modprobe.args" ]'
KMM_MODPROBE=$ROOT/modprobe run kmod unload "$ROOT/onlyunload.yaml" --image-root "$ROOT/img"
ok "args.unload alone: unload runs 'modprobe -rvd DIR args... NAME'" \
	eval '[ $RC = 0 ] && [ "$(tail -1 "$ROOT/modprobe.args")" = "[-rvd][$ROOT/img/opt][--wait=100][fx_a]" ]'
# the recording modprobe removed nothing: take fx_a out for the cases below
run kmod unload "$ROOT/onlyload.yaml" --image-root "$ROOT/img"
printf '#!/bin/sh\necho "modprobe: FATAL: Module fx_a not found."\nexit 1\n' >"$ROOT/modprobe"
KMM_MODPROBE=$ROOT/modprobe run kmod load "$ROOT/raw.yaml"
ok "a failing modprobe exits 1 with its last line in the error" eval '[ $RC = 1 ] && said "exit status 1: modprobe: FATAL"'

# SIGTERM between steps: the in-flight insert finishes, the next one never starts.
: >"$ROOT/calls.log"
KMM_SHIM_DELAY_MS=1500 LD_PRELOAD=$SHIM "$WORKER" kmod load "$ROOT/order.yaml" \
	--image-root "$ROOT/img" >"$ROOT/out" 2>&1 &
pid=$!
sleep 0.7
kill -TERM $pid
wait $pid
RC=$?
ok "SIGTERM stops the worker with exit 143" eval '[ $RC = 143 ] && said "stopped"'
ok "after SIGTERM no further module is loaded" eval 'calls "insmod fx_o2 ;" && ! loaded fx_o1'

# Standalone mode: a Module resolved for this host, as the operator would.
cat >"$ROOT/module.yaml" <<MODULE
apiVersion: kmm.sigs.x-k8s.io/v1beta1
kind: Module
metadata: {name: fx, namespace: default}
spec:
  selector: {kubernetes.io/hostname: here}
  moduleLoader:
    container:
      modprobe:
        moduleName: fx_b
        parameters: [x=3]
      kernelMappings:
      - literal: 0.0.0-other
        containerImage: oci:$ROOT/nosuch
      - regexp: '^9\.9\.'
        containerImage: oci:$ROOT/oci:fx-\${KERNEL_XYZ}
MODULE
: >"$ROOT/calls.log"
run run -f "$ROOT/module.yaml" --image-root "$ROOT/img"
ok "run -f loads the Module's module from given files" eval '[ $RC = 0 ] && calls "insmod fx_a ;insmod fx_b x=3;"'
run run --unload -f "$ROOT/module.yaml" --image-root "$ROOT/img"
ok "run --unload reverses it" eval '[ $RC = 0 ] && ! loaded fx_b && ! loaded fx_a'
sed 's|moduleName: fx_b|dirName: /opt|' "$ROOT/module.yaml" >"$ROOT/noname-module.yaml"
: >"$ROOT/calls.log"
run run -f "$ROOT/noname-module.yaml" --image-root "$ROOT/img"
ok "run -f with a Module that has neither moduleName nor rawArgs exits 1 and loads nothing" \
	eval '[ $RC = 1 ] && said "noname-module.yaml: modprobe: neither moduleName nor rawArgs" && calls ""'
run run -f "$ROOT/module.yaml" --kernel 1.2.3-nomatch --image-root "$ROOT/img"
ok "run with a kernel no mapping matches exits 1 and says so" \
	eval '[ $RC = 1 ] && said "no kernelMappings entry of Module fx matches kernel 1.2.3-nomatch"'
if "$WORKER" --help | grep -q -- '--image REF'; then
	mkdir -p "$ROOT/ociroot"
	cp -r "$ROOT/img/opt" "$ROOT/ociroot/"
	python3 "$(dirname "$0")/../../vm/mkoci.py" "$ROOT/ociroot" "$ROOT/oci" fx-9.9.9
	: >"$ROOT/calls.log"
	run run -f "$ROOT/module.yaml" --pull-dir "$ROOT/pull"
	ok "run -f pulls the mapped image (an OCI layout) and loads" \
		eval '[ $RC = 0 ] && calls "insmod fx_a ;insmod fx_b x=3;" && said "pulling image"'
	ok "the extracted image is removed afterwards" eval '[ -z "$(ls -A "$ROOT/pull")" ]'
	run run --unload -f "$ROOT/module.yaml" --pull-dir "$ROOT/pull"
	ok "run --unload with a pull" eval '[ $RC = 0 ] && ! loaded fx_b'
else
	for t in pull cleanup unload; do
		n=$((n + 1))
		echo "not ok $n - standalone $t"; echo "# kmm-worker was built without lib/registry (no --image)"; fails=$((fails + 1))
	done
fi

echo "# $((n - fails)) passed, $fails failed"
[ $fails -eq 0 ]
