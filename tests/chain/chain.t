#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole build-and-sign chain for real, outside the cluster:
#   1. a Debian base with gcc and linux-headers-<KVER> (mmdebstrap, cached in
#      ~/.cache/kmm/chain), pushed to the registry;
#   2. the build pod's step: buildah runs the Dockerfile of the sample
#      ConfigMap (deploy/samples/build-sign/) with the build args kmmctl plan
#      gives for the sample Module, compiling tests/vm/modules against the
#      headers, and pushes the unsigned image;
#   3. the sign pod's step: kmm-sign from its own FROM-scratch image
#      (images/sign/Containerfile) signs filesToSign inside the unsigned
#      image's files; the signed image keeps every layer of the unsigned one
#      and is pushed over the same tag. The same again with another key;
#   4. a QEMU guest with Secure Boot on (OVMF's snakeoil variable store, the
#      test certificate in MokListRT, module.sig_enforce=1) where kmm-worker
#      pulls each image (OCI layouts copied from the registry; the guest has
#      no network) and loads it: the signed module loads, the unsigned build
#      and the other key's are refused. Judged from the guest's /proc/modules
#      and kernel log (tests/chain/guest/init), plus kmm-worker's errors.
#
# Registry: $KMM_TESTENV_REGISTRY (tests/run's integration stage exports it;
# tests/integration/chain/chain.t runs this file there), else a private
# docker-registry on 127.0.0.1. Any missing tool or failed step is a failure
# with its reason, and the cases that depend on it fail too.
# Environment: KMM_SOURCE_DIR, KMM_CHAIN_CACHE, KMM_CHAIN_BUILD, KMM_VM_CACHE,
# KMM_VM_TIMEOUT (per boot, default 150 s), KMM_CHAIN_KEEP=1 keeps the work
# directory.
set -uo pipefail

# shellcheck source=tests/chain/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES=(host-tools kmm-binaries registry base-image sample-plan source-image sign-image
	build unsigned-image sign signed-image other-key-image guest-setup guest-boot
	secure-boot unsigned-refused other-key-refused signed-loads signed-unloads)
GUEST_CASES=(secure-boot unsigned-refused other-key-refused signed-loads signed-unloads)
echo "1..${#CASES[@]}"

N=0
FAILED=0
BROKEN= # the first failed step: every later case depends on it
T0=$(date +%s)
TSTEP=$T0
pass() {
	N=$((N + 1))
	echo "ok $N - $1${2:+ # $2}"
}
fail() {
	N=$((N + 1))
	FAILED=$((FAILED + 1))
	echo "not ok $N - $1"
	shift
	local l
	for l in "$@"; do echo "#   $l"; done
}
# step NAME COMMAND...: runs COMMAND unless an earlier step failed; TAP line
# with its wall time. COMMAND reports its failure through CHAIN_ERR.
step() {
	local name=$1 t
	shift
	if [ -n "$BROKEN" ]; then
		fail "$name" "not run: step '$BROKEN' failed"
		return 1
	fi
	CHAIN_ERR=
	TSTEP=$(date +%s)
	if "$@"; then
		t=$(($(date +%s) - TSTEP))
		pass "$name" "${t} s${STEP_NOTE:+, $STEP_NOTE}"
		STEP_NOTE=
		return 0
	fi
	fail "$name" "${CHAIN_ERR:-failed without a reason}"
	BROKEN=$name
	return 1
}
STEP_NOTE=

CHAIN_WORK=$(mktemp -d /tmp/kmm-chain.XXXXXX)
QEMU_PID=
cleanup() {
	[ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null
	chain_cleanup_store
	chain_stop_registry
	if [ "${KMM_CHAIN_KEEP:-0}" = 1 ]; then
		echo "# kept $CHAIN_WORK"
	else
		rm -rf "$CHAIN_WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SAMPLES=$KMM_SOURCE_DIR/deploy/samples/build-sign
TRUSTED_CN="kmm chain trusted key"
OTHER_CN="kmm chain other key"
W=$CHAIN_WORK

# ---- host side: tools, binaries, registry, images ----
s_tools() {
	chain_check_tools || return 1
	chain_init || return 1
	vm_pick_kernel || { chain_fail "$VM_ERR"; return 1; }
	STEP_NOTE="kernel $KVER"
}

s_kmm() {
	chain_build_kmm || return 1
	STEP_NOTE="static kmm-sign $(($(stat -c %s "$SIGN_STATIC") / 1024)) KiB"
}

s_registry() {
	chain_registry || return 1
	STEP_NOTE="$CHAIN_REGISTRY${CHAIN_REGISTRY_PID:+ (private)}"
}

s_base() {
	chain_base || return 1
	[ "$BASE_CACHED" = 1 ] && STEP_NOTE="cached base $BASE_KEY" || STEP_NOTE="made base $BASE_KEY"
}

# kmmctl validates the sample Module and plans it for KVER: build args,
# destination, sign inputs and the worker's config all come from the plan.
s_plan() {
	local out
	sed "s|kmm-registry.local:5000|$CHAIN_REGISTRY|g" "$SAMPLES/module.yaml" >"$W/module.yaml"
	out=$("$KMMCTL" validate -f "$W/module.yaml" -f "$SAMPLES/dockerfile-configmap.yaml" 2>&1) ||
		{ chain_fail "kmmctl validate: $out"; return 1; }
	"$KMMCTL" plan -f "$W/module.yaml" --kernel "$KVER" -o json >"$W/plan-all.json" 2>"$W/plan.err" ||
		{ chain_fail "kmmctl plan: $(cat "$W/plan.err")"; return 1; }
	jq '.[0]' "$W/plan-all.json" >"$W/plan.json" || { chain_fail "kmmctl plan printed no JSON"; return 1; }
	IMAGE=$CHAIN_REGISTRY/kmm/vmk:$KVER
	local want got
	for want in "targeted=true" "build.destination=$IMAGE" "sign.destination=$IMAGE" \
		"sign.unsignedImage=$IMAGE" "workerConfig.containerImage=$IMAGE"; do
		got=$(jq -r ".${want%%=*}" "$W/plan.json")
		[ "$got" = "${want#*=}" ] || { chain_fail "plan: .${want%%=*} is '$got', wanted '${want#*=}'"; return 1; }
	done
	for want in KERNEL_VERSION KERNEL_FULL_VERSION; do
		got=$(jq -r --arg n "$want" '.build.buildArgs[] | select(.name == $n) | .value' "$W/plan.json")
		[ "$got" = "$KVER" ] || { chain_fail "plan: build arg $want is '$got', wanted $KVER"; return 1; }
	done
}

s_source() {
	SOURCE_IMAGE=$(jq -r '.build.buildArgs[] | select(.name == "SOURCE_IMAGE") | .value' "$W/plan.json")
	[ -n "$SOURCE_IMAGE" ] || { chain_fail "the sample Module has no SOURCE_IMAGE build arg"; return 1; }
	chain_source_image "$SOURCE_IMAGE"
}

# images/sign/Containerfile: one layer holding only the static kmm-sign.
s_sign_image() {
	SIGN_IMAGE=$CHAIN_REGISTRY/kmm/kmm-sign:chain
	chain_sign_image "$SIGN_IMAGE" || return 1
	skopeo copy --quiet --src-tls-verify=false "docker://$SIGN_IMAGE" "oci:$W/oci:kmm-sign" >/dev/null 2>&1 ||
		{ chain_fail "cannot copy $SIGN_IMAGE back from the registry"; return 1; }
	python3 "$CHAIN_LIB_DIR/imagefiles.py" "$W/oci" kmm-sign >"$W/files-sign" ||
		{ chain_fail "cannot read the sign image"; return 1; }
	local files
	files=$(grep -v '^config ' "$W/files-sign" | cut -d' ' -f1,2 | tr '\n' ' ')
	[ "$files" = "0 usr/local/bin/kmm-sign " ] ||
		{ chain_fail "sign image holds '$files', wanted only layer 0 usr/local/bin/kmm-sign"; return 1; }
	grep -qx 'config \["/usr/local/bin/kmm-sign"\]' "$W/files-sign" ||
		{ chain_fail "sign image entrypoint: $(grep '^config' "$W/files-sign")"; return 1; }
	STEP_NOTE="$(($(jq '[.layers[].size] | add' "$W/oci/blobs/sha256/$(jq -r '.manifests[] |
		select(.annotations["org.opencontainers.image.ref.name"] == "kmm-sign") | .digest' "$W/oci/index.json" |
		cut -d: -f2)") / 1024)) KiB compressed"
}

s_build() {
	python3 "$CHAIN_LIB_DIR/configmap-key.py" "$SAMPLES/dockerfile-configmap.yaml" dockerfile \
		>"$W/Dockerfile" 2>"$W/configmap.err" || { chain_fail "$(cat "$W/configmap.err")"; return 1; }
	chain_build "$W/plan.json" "$W/Dockerfile" || return 1
	UNSIGNED_DIGEST=$(chain_digest "$IMAGE")
	[ -n "$UNSIGNED_DIGEST" ] || { chain_fail "no $IMAGE in the registry after the build"; return 1; }
	UNSIGNED_REF=${IMAGE%:*}@$UNSIGNED_DIGEST
	STEP_NOTE="$UNSIGNED_DIGEST"
}

# What the build pushed: modules built for KVER and depmod's files under
# <dirName>/lib/modules/KVER, none signed.
s_unsigned_image() {
	local d=lib/modules/$KVER f
	skopeo copy --quiet --src-tls-verify=false "docker://$UNSIGNED_REF" "oci:$W/oci:unsigned" >/dev/null 2>&1 ||
		{ chain_fail "cannot copy $UNSIGNED_REF from the registry"; return 1; }
	python3 "$CHAIN_LIB_DIR/imagefiles.py" "$W/oci" unsigned >"$W/files-unsigned" ||
		{ chain_fail "cannot read the unsigned image"; return 1; }
	for f in "opt/$d/extra/vmk_a.ko" "opt/$d/extra/vmk_b.ko" "opt/$d/modules.dep"; do
		grep -q "^0 $f " "$W/files-unsigned" || { chain_fail "the unsigned image lacks /$f"; return 1; }
	done
	if grep -q ' signed$' "$W/files-unsigned"; then
		chain_fail "the build's image already holds signed files: $(grep ' signed$' "$W/files-unsigned" | cut -d' ' -f2)"
		return 1
	fi
	python3 - "$W/oci" unsigned "$KVER" <<'EOF' || { chain_fail "vermagic of vmk_b.ko is not $KVER"; return 1; }
import json, os, sys, gzip, tarfile, io
layout, name, kver = sys.argv[1:]
idx = json.load(open(os.path.join(layout, "index.json")))
m = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == name][0]
man = json.load(open(os.path.join(layout, "blobs", *m["digest"].split(":"))))
data = open(os.path.join(layout, "blobs", *man["layers"][0]["digest"].split(":")), "rb").read()
tar = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)))
ko = tar.extractfile(f"opt/lib/modules/{kver}/extra/vmk_b.ko").read()
sys.exit(0 if (b"vermagic=" + kver.encode() + b" ") in ko else 1)
EOF
	STEP_NOTE="$(grep -c '\.ko ' "$W/files-unsigned") modules, vermagic $KVER"
}

s_sign() {
	chain_make_key "$W/trusted.pem" "$W/trusted.crt" "$TRUSTED_CN" || return 1
	chain_sign "$W/plan.json" "$W/trusted.pem" "$W/trusted.crt" "$SIGN_IMAGE" || return 1
	SIGNED_DIGEST=$(chain_digest "$IMAGE")
	[ -n "$SIGNED_DIGEST" ] && [ "$SIGNED_DIGEST" != "$UNSIGNED_DIGEST" ] ||
		{ chain_fail "$IMAGE still points at the unsigned image after the sign step"; return 1; }
	STEP_NOTE="$SIGNED_DIGEST"
}

# The signed image: the unsigned image's layers unchanged plus one layer in
# which exactly the filesToSign differ (now carrying a signature), no key.
s_signed_image() {
	local u s extra f
	skopeo copy --quiet --src-tls-verify=false "docker://$IMAGE" "oci:$W/oci:signed" >/dev/null 2>&1 ||
		{ chain_fail "cannot copy $IMAGE from the registry"; return 1; }
	u=$(chain_layers "$UNSIGNED_REF" | tr '\n' ' ')
	s=$(chain_layers "$IMAGE" | tr '\n' ' ')
	[ -n "$u" ] && [ "${s#"$u"}" != "$s" ] ||
		{ chain_fail "the signed image does not keep the unsigned layers: unsigned [$u], signed [$s]"; return 1; }
	extra=$(echo "${s#"$u"}" | wc -w)
	[ "$extra" = 1 ] || { chain_fail "the sign step added $extra layers, wanted 1"; return 1; }
	python3 "$CHAIN_LIB_DIR/imagefiles.py" "$W/oci" signed >"$W/files-signed" ||
		{ chain_fail "cannot read the signed image"; return 1; }
	local top=$(($(echo "$u" | wc -w)))
	for f in $(jq -r '.sign.filesToSign[]' "$W/plan.json"); do
		grep -q "^$top ${f#/} .* signed$" "$W/files-signed" ||
			{ chain_fail "$f is not signed in the top layer"; return 1; }
	done
	# Every other file of the top layer is byte-identical to the unsigned one.
	while read -r l p _ h _; do
		jq -e -r --arg p "/$p" '.sign.filesToSign | index($p)' "$W/plan.json" >/dev/null && continue
		grep -q "^0 $p [0-9]* $h " "$W/files-unsigned" ||
			{ chain_fail "/$p changed in the sign step but is not in filesToSign"; return 1; }
	done < <(grep "^$top " "$W/files-signed")
	# The key was a build secret: no file of it, and none of its bytes, in any layer.
	if grep -q -e '/secrets/' -e '\.pem ' "$W/files-signed"; then
		chain_fail "a secret file ended up in the signed image: $(grep -e /secrets/ -e '\.pem ' "$W/files-signed" | head -n 1)"
		return 1
	fi
	local keyline
	keyline=$(sed -n 2p "$W/trusted.pem")
	for l in $(skopeo inspect --tls-verify=false --raw "docker://$IMAGE" | jq -r '.layers[].digest | sub("sha256:"; "")'); do
		if zcat -f "$W/oci/blobs/sha256/$l" | grep -q -a -F -e "$keyline"; then
			chain_fail "bytes of the private key are in layer sha256:$l"
			return 1
		fi
	done
	STEP_NOTE="$(grep -c "^$top .* signed$" "$W/files-signed") signed files in 1 new layer"
}

s_other_key() {
	chain_make_key "$W/other.pem" "$W/other.crt" "$OTHER_CN" || return 1
	OTHER_IMAGE=$IMAGE-otherkey
	chain_sign "$W/plan.json" "$W/other.pem" "$W/other.crt" "$SIGN_IMAGE" "$OTHER_IMAGE" "$UNSIGNED_REF" ||
		return 1
	skopeo copy --quiet --src-tls-verify=false "docker://$OTHER_IMAGE" "oci:$W/oci:otherkey" >/dev/null 2>&1 ||
		{ chain_fail "cannot copy $OTHER_IMAGE from the registry"; return 1; }
	STEP_NOTE="$(chain_digest "$OTHER_IMAGE")"
}

# ---- the Secure Boot guest ----
s_guest_setup() {
	local R=$W/root
	chain_efi_kernel || return 1
	chain_vars "$W/vars.fd" "$W/trusted.crt.der" || return 1
	vm_base_root "$R" || { chain_fail "cannot lay out the guest root (kmm-worker and its libraries)"; return 1; }
	[ -e "$R/bin/kmm-worker-pull" ] || vm_copy_with_libs "$R" "$WORKER_PULL_BIN" /bin/kmm-worker-pull ||
		{ chain_fail "cannot copy kmm-worker-pull and its libraries into the guest"; return 1; }
	cp "$CHAIN_LIB_DIR/guest/init" "$R/init" && chmod 755 "$R/init" || return 1
	mkdir -p "$R/etc/chain" && jq '.workerConfig' "$W/plan.json" >"$R/etc/chain/worker.json" || return 1
	OTHER_DIGEST=$(chain_digest "$OTHER_IMAGE")
	printf "%s='%s'\n" TRUSTED_CN "$TRUSTED_CN" OTHER_CN "$OTHER_CN" UNSIGNED_DIGEST "$UNSIGNED_DIGEST" \
		SIGNED_DIGEST "$SIGNED_DIGEST" OTHER_DIGEST "$OTHER_DIGEST" >"$R/etc/chain/env"
	# The three images exactly as the registry serves them (same digests).
	rm -rf "$R/oci" && mkdir -p "$R/oci" || return 1
	local n
	for n in "unsigned $UNSIGNED_REF" "signed ${IMAGE%:*}@$SIGNED_DIGEST" "otherkey $OTHER_IMAGE"; do
		skopeo copy --quiet --src-tls-verify=false "docker://${n#* }" "oci:$R/oci:${n%% *}" >/dev/null 2>&1 ||
			{ chain_fail "cannot copy ${n#* } into the guest's OCI layout"; return 1; }
	done
	vm_pack "$R" "$W/initrd.gz" || { chain_fail "cpio of the guest root failed"; return 1; }
	STEP_NOTE="initramfs $(($(stat -c %s "$W/initrd.gz") / 1024)) KiB"
}

s_guest_boot() {
	chain_boot "$W/initrd.gz" "$W/vars.fd" "$W/serial.log" &
	QEMU_PID=$!
	wait "$QEMU_PID"
	local rc=$?
	QEMU_PID=
	tr -d '\r' <"$W/serial.log" >"$W/guest.log"
	grep -q '^KMMDONE' "$W/guest.log" && return 0
	chain_fail "the guest did not finish (qemu exit $rc; KMM_VM_TIMEOUT=$KMM_VM_TIMEOUT s); serial tail: $(tail -n 12 "$W/guest.log" | tr '\n' '|')"
	return 1
}

step host-tools s_tools
step kmm-binaries s_kmm
step registry s_registry
step base-image s_base
step sample-plan s_plan
step source-image s_source
step sign-image s_sign_image
step build s_build || sed -n '1,400p' "$W/build.log" 2>/dev/null | grep -v '^\(Copying\|Writing\|Storing\|Getting\)' | tail -n 25 | sed 's/^/#   | /'
step unsigned-image s_unsigned_image
step sign s_sign || tail -n 25 "$W/sign.log" 2>/dev/null | sed 's/^/#   | /'
step signed-image s_signed_image
step other-key-image s_other_key
step guest-setup s_guest_setup
step guest-boot s_guest_boot

for t in "${GUEST_CASES[@]}"; do
	if [ -n "$BROKEN" ]; then
		fail "$t" "not run: step '$BROKEN' failed"
		continue
	fi
	line=$(grep -a -m1 "^KMMTEST [a-z-]* $t\( \|$\)" "$W/guest.log")
	case $(echo "$line" | cut -d' ' -f2) in
	ok) pass "$t" ;;
	not-ok)
		fail "$t" "$(echo "$line" | sed -n 's/^[^:]*: *//p')"
		sed -n "/^KMMBEGIN $t\$/,/^KMMBEGIN /p" "$W/guest.log" | grep -a '^KMMDIAG\|^KMMLOG' |
			head -n 40 | sed 's/^/#   /'
		;;
	*) fail "$t" "no result from the guest" ;;
	esac
done
[ -f "$W/guest.log" ] && grep -a '^KMMDIAG tainted' "$W/guest.log" | sed 's/^/# /'
echo "# chain: $FAILED failed, $(($(date +%s) - T0)) s in all (base ${BASE_CACHED:+$([ "$BASE_CACHED" = 1 ] && echo cached || echo made this run)})"
[ "$FAILED" -eq 0 ]
