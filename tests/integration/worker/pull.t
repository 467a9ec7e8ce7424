#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm-worker pulling its kmod image from the testenv's real registries (the
# plain-HTTP one and the TLS + basic-auth one), then loading into the fake
# kernel of tests/unit/kmod (LD_PRELOAD shim: the host kernel cannot load
# modules). Checks that the worker's registry options reach the pull:
# credentials from a .dockerconfigjson, a custom CA, skip-verify, and that
# each missing piece fails with a clear error. Module loading itself is
# proven on a real kernel by tests/vm/worker.t.
set -u

n=0
failed=0
bail() {
	echo "1..1"
	echo "not ok 1 - prerequisites"
	echo "# $1"
	exit 1
}
for v in KMM_BUILD_DIR KMM_SOURCE_DIR KMM_TESTENV_REGISTRY KMM_TESTENV_REGISTRY_TLS \
	KMM_TESTENV_REGISTRY_TLS_CA KMM_TESTENV_REGISTRY_AUTHFILE; do
	[ -n "${!v:-}" ] || bail "$v is not set (run under tests/run, or eval \"\$(tests/env/testenv env)\")"
done
WORKER=$KMM_BUILD_DIR/src/worker/kmm-worker
SHIM=$KMM_BUILD_DIR/tests/unit/kmod/libkmm-kmod-shim.so
FX=$KMM_BUILD_DIR/tests/unit/kmod
for f in "$WORKER" "$KMM_BUILD_DIR/src/worker/kmm-worker-pull" "$SHIM" "$FX/fx_a.ko"; do
	[ -e "$f" ] || bail "$f is not built"
done
command -v depmod >/dev/null || PATH=/sbin:/usr/sbin:$PATH
command -v depmod >/dev/null || bail "depmod not found; run scripts/install-deps"

KVER=9.9.9-test
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/kmm-worker-pull.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export KMM_SHIM_ROOT=$ROOT/fake KMM_SHIM_UNAME=$KVER

ok() { # DESCRIPTION COMMAND...
	local d=$1
	shift
	n=$((n + 1))
	if "$@"; then
		echo "ok $n - $d"
	else
		echo "not ok $n - $d"
		sed 's/^/#   /' "$ROOT/out" 2>/dev/null | tail -n 8
		failed=$((failed + 1))
	fi
}
reset_kernel() {
	rm -rf "$ROOT/fake"
	mkdir -p "$ROOT/fake/sys/module" "$ROOT/fake/proc" "$ROOT/fake/dev"
	: >"$ROOT/fake/proc/modules"
	: >"$ROOT/fake/dev/kmsg"
}
run() { # kmm-worker under the fake kernel; output in $ROOT/out, status in $RC
	reset_kernel
	LD_PRELOAD=$SHIM "$WORKER" "$@" --pull-dir "$ROOT/pull" >"$ROOT/out" 2>&1
	RC=$?
}
loaded_b() { [ "$(cat "$ROOT/fake/calls.log" 2>/dev/null | tr '\n' ';')" = "insmod fx_a ;insmod fx_b p=1;" ]; }
said() { grep -q -- "$1" "$ROOT/out"; }
clean() { [ -z "$(ls -A "$ROOT/pull" 2>/dev/null)" ]; }

# A FROM-scratch kmod image: /opt/lib/modules/<kernel> only.
IMG=$ROOT/image
mkdir -p "$IMG/opt/lib/modules/$KVER/extra"
cp "$FX/fx_a.ko" "$FX/fx_b.ko" "$IMG/opt/lib/modules/$KVER/extra/"
depmod -b "$IMG/opt" "$KVER" 2>/dev/null || bail "depmod failed"
PLAIN_REF=$KMM_TESTENV_REGISTRY/kmm-worker-test/fx:$KVER
TLS_REF=$KMM_TESTENV_REGISTRY_TLS/kmm-worker-test/fx:$KVER
"$KMM_SOURCE_DIR/tests/env/testenv" image push "$IMG" "$PLAIN_REF" >"$ROOT/push.log" 2>&1 ||
	bail "testenv image push $PLAIN_REF failed: $(tail -n 3 "$ROOT/push.log")"
"$KMM_SOURCE_DIR/tests/env/testenv" image push "$IMG" "$TLS_REF" >"$ROOT/push.log" 2>&1 ||
	bail "testenv image push $TLS_REF failed: $(tail -n 3 "$ROOT/push.log")"

cfg() { # FILE IMAGE
	cat >"$1" <<EOF
kernelVersion: $KVER
containerImage: $2
modprobe:
  moduleName: fx_b
  dirName: /opt
  parameters: [p=1]
EOF
}
cfg "$ROOT/plain.yaml" "$PLAIN_REF"
cfg "$ROOT/tls.yaml" "$TLS_REF"

echo "1..8"
run kmod load "$ROOT/plain.yaml" --pull --registry-insecure
ok "plain registry, anonymous: --pull pulls containerImage and loads" eval '[ $RC = 0 ] && loaded_b'
ok "the extracted image is removed afterwards" clean

run kmod load "$ROOT/tls.yaml" --pull --registry-ca "$KMM_TESTENV_REGISTRY_TLS_CA" \
	--pull-secret "$KMM_TESTENV_REGISTRY_AUTHFILE"
ok "TLS + basic auth: custom CA and .dockerconfigjson" eval '[ $RC = 0 ] && loaded_b'

run kmod load "$ROOT/tls.yaml" --pull --registry-ca "$KMM_TESTENV_REGISTRY_TLS_CA"
ok "TLS registry without credentials: exit 1, nothing loaded, the error says so" \
	eval '[ $RC = 1 ] && ! loaded_b && said "requires authentication and no credentials"'

run kmod load "$ROOT/tls.yaml" --pull --pull-secret "$KMM_TESTENV_REGISTRY_AUTHFILE"
ok "TLS registry without its CA: exit 1, the error is about the certificate" \
	eval '[ $RC = 1 ] && ! loaded_b && grep -qi "certificate\|verif\|TLS" "$ROOT/out"'

run kmod load "$ROOT/tls.yaml" --pull --registry-skip-verify --pull-secret "$KMM_TESTENV_REGISTRY_AUTHFILE"
ok "TLS registry with --registry-skip-verify and credentials" eval '[ $RC = 0 ] && loaded_b'

run kmod load "$ROOT/plain.yaml" --image "$KMM_TESTENV_REGISTRY/kmm-worker-test/fx:no-such-tag" --registry-insecure
ok "a tag the registry does not have: exit 1, the error names the image" \
	eval '[ $RC = 1 ] && said "no-such-tag" && clean'

run kmod unload "$ROOT/plain.yaml" --pull --registry-insecure
ok "unload pulls too and succeeds on a module that is not loaded" eval '[ $RC = 0 ] && clean'

echo "# $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
