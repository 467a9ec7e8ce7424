# shellcheck shell=bash disable=SC2034
# SPDX-License-Identifier: Apache-2.0
# (SC2034: the functions set globals for their callers.)
# The build-and-sign chain outside the cluster, as shell functions shared by
# tests/chain/chain.t and the cookbook (docs/cookbook/build.md, sign.md).
#
# What a kmm build pod and sign pod would run, with buildah instead of kaniko:
#   chain_base        Debian + gcc + Debian's linux-headers-<KVER> (mmdebstrap),
#                     cached as an OCI layout under $KMM_CHAIN_CACHE, pushed
#                     to the registry every run
#   chain_build       buildah bud of the sample ConfigMap's Dockerfile with the
#                     build args kmm injects, pushed to the Module's image
#   chain_sign_image  images/sign/Containerfile (kmm-sign alone, FROM scratch)
#   chain_sign        the sign pod's Dockerfile: copy <dirName> out of the
#                     unsigned image, kmm-sign the files in place, copy them
#                     back on top of the unsigned image's layers, push
#
# Reuses tests/vm/lib.sh (kernel choice and download, guest root helpers).
# Variables read: KMM_SOURCE_DIR, KMM_CHAIN_CACHE (~/.cache/kmm/chain),
# KMM_CHAIN_BUILD (build dir of the non-sanitized binaries, build/chain),
# CHAIN_WORK (scratch directory of this run; must be set before chain_init).
# Every chain_* function returns non-zero with the reason in $CHAIN_ERR.

CHAIN_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$CHAIN_LIB_DIR/../vm/lib.sh"
KMM_CHAIN_CACHE=${KMM_CHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmm/chain}
KMM_CHAIN_BUILD=${KMM_CHAIN_BUILD:-$KMM_SOURCE_DIR/build/chain}
CHAIN_ERR=
CHAIN_REGISTRY=
CHAIN_REGISTRY_PID=

chain_fail() {
	CHAIN_ERR=$*
	return 1
}

# Checks every host tool and file the chain needs, and names what is missing.
chain_check_tools() {
	local missing=() t f
	for t in buildah runc skopeo mmdebstrap docker-registry sbsign curl jq flock python3 qemu-system-x86_64 \
		meson ninja gcc openssl cpio gzip timeout; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	for f in /usr/share/OVMF/OVMF_CODE_4M.secboot.fd /usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd \
		/usr/share/ovmf/PkKek-1-snakeoil.key /usr/share/ovmf/PkKek-1-snakeoil.pem; do
		[ -e "$f" ] || missing+=("$f (ovmf)")
	done
	for f in /usr/lib/x86_64-linux-gnu/libcrypto.a /usr/lib/x86_64-linux-gnu/libarchive.a \
		/usr/lib/x86_64-linux-gnu/libzstd.a /usr/lib/x86_64-linux-gnu/liblzma.a; do
		[ -e "$f" ] || missing+=("$f (static link of kmm-sign)")
	done
	vm_check_tools || missing+=("$VM_ERR")
	[ ${#missing[@]} -eq 0 ] ||
		chain_fail "missing: ${missing[*]} (scripts/install-deps installs them; see the '# chain' section of scripts/packages.txt)"
}

# Prepares $CHAIN_WORK: a private buildah store and a registries.conf that
# marks the loopback registry as plain HTTP.
chain_init() {
	[ -n "${CHAIN_WORK:-}" ] || { chain_fail "CHAIN_WORK is not set"; return 1; }
	mkdir -p "$CHAIN_WORK/store" "$CHAIN_WORK/run" || return 1
	RUNC=$(command -v runc)
	export CONTAINERS_REGISTRIES_CONF=$CHAIN_WORK/registries.conf
	# buildah's own default (crun) cannot run containers on hybrid cgroups.
	export BUILDAH_RUNTIME=$RUNC
	: >"$CONTAINERS_REGISTRIES_CONF"
	chain_registry_conf
}

chain_registry_conf() {
	{
		echo 'unqualified-search-registries = []'
		if [ -n "$CHAIN_REGISTRY" ]; then
			echo '[[registry]]'
			echo "location = \"$CHAIN_REGISTRY\""
			echo 'insecure = true'
		fi
	} >"$CONTAINERS_REGISTRIES_CONF"
}

# buildah with the run's private store (overlay: native on ext4, and it does
# not copy the 380 MB base for every container as vfs does).
chain_buildah() {
	buildah --root "$CHAIN_WORK/store" --runroot "$CHAIN_WORK/run" --storage-driver overlay "$@"
}

# buildah bud as the build and sign pods: runc with real namespaces, no
# network, reproducible timestamps, OCI format.
chain_bud() {
	chain_buildah bud --isolation oci --runtime "$RUNC" --network none --timestamp 0 \
		--format oci --pull-always "$@"
}

# Removes every container and image of the private store (unmounting overlay
# layers), then the store itself. Safe to call twice.
chain_cleanup_store() {
	[ -n "${CHAIN_WORK:-}" ] && [ -d "$CHAIN_WORK/store" ] || return 0
	chain_buildah rm --all >/dev/null 2>&1
	chain_buildah rmi --all --force >/dev/null 2>&1
	local m
	for m in $(awk -v w="$CHAIN_WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
	rm -rf "$CHAIN_WORK/store" "$CHAIN_WORK/run"
}

# Uses $KMM_TESTENV_REGISTRY (the plain-HTTP registry of tests/env/testenv)
# or, when it is unset, starts a private docker-registry on 127.0.0.1.
chain_registry() {
	if [ -n "${KMM_TESTENV_REGISTRY:-}" ]; then
		CHAIN_REGISTRY=$KMM_TESTENV_REGISTRY
	else
		local port
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		mkdir -p "$CHAIN_WORK/registry"
		cat >"$CHAIN_WORK/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $CHAIN_WORK/registry/data}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
EOF
		docker-registry serve "$CHAIN_WORK/registry/config.yml" >"$CHAIN_WORK/registry/log" 2>&1 &
		CHAIN_REGISTRY_PID=$!
		CHAIN_REGISTRY=127.0.0.1:$port
		for _ in $(seq 50); do
			curl -fs "http://$CHAIN_REGISTRY/v2/" >/dev/null 2>&1 && break
			sleep 0.2
		done
	fi
	chain_registry_conf
	curl -fs "http://$CHAIN_REGISTRY/v2/" >/dev/null ||
		chain_fail "registry $CHAIN_REGISTRY does not answer /v2/"
}

chain_stop_registry() {
	[ -n "$CHAIN_REGISTRY_PID" ] || return 0
	kill "$CHAIN_REGISTRY_PID" 2>/dev/null
	wait "$CHAIN_REGISTRY_PID" 2>/dev/null
	CHAIN_REGISTRY_PID=
}

# Builds kmm in $KMM_CHAIN_BUILD without sanitizers (binaries that go into
# images and guests), then links kmm-sign statically for its FROM-scratch
# image. Sets WORKER_BIN, WORKER_PULL_BIN (kmm-worker's registry helper, which
# must sit next to it), KMMCTL and SIGN_STATIC.
chain_build_kmm() {
	local b=$KMM_CHAIN_BUILD log=$CHAIN_WORK/build-kmm.log objs
	if [ ! -f "$b/build.ninja" ]; then
		meson setup "$b" "$KMM_SOURCE_DIR" --buildtype=release -Db_sanitize=none >"$log" 2>&1 ||
			{ chain_fail "meson setup $b failed: $(tail -n 3 "$log" | tr '\n' ' ')"; return 1; }
	fi
	ninja -C "$b" src/worker/kmm-worker src/worker/kmm-worker-pull src/sign/kmm-sign src/cli/kmmctl \
		>>"$log" 2>&1 ||
		{ chain_fail "building kmm-worker, kmm-worker-pull, kmm-sign and kmmctl failed: $(grep -m3 error "$log" | tr '\n' ' ')"; return 1; }
	WORKER_BIN=$b/src/worker/kmm-worker
	WORKER_PULL_BIN=$b/src/worker/kmm-worker-pull
	KMMCTL=$b/src/cli/kmmctl
	# The objects meson links into kmm-sign, linked again with -static and the
	# static archives of the libraries it uses (Debian ships all four).
	objs=$(ninja -C "$b" -t commands src/sign/kmm-sign | tail -n 1 | tr ' ' '\n' | grep -E '\.(o|a)$')
	[ -n "$objs" ] || { chain_fail "cannot read kmm-sign's link command from ninja"; return 1; }
	SIGN_STATIC=$b/kmm-sign-static
	# shellcheck disable=SC2086
	(cd "$b" && gcc -static -s -o "$SIGN_STATIC" $objs -Wl,--start-group -larchive -lcrypto -llzma \
		-lzstd -lz -lm -pthread -Wl,--end-group) >>"$log" 2>&1 ||
		{ chain_fail "static link of kmm-sign failed: $(grep -m3 -i 'error\|undefined' "$log" | tr '\n' ' ')"; return 1; }
	"$SIGN_STATIC" --version >/dev/null 2>&1 ||
		chain_fail "the static kmm-sign does not run"
}

# The Debian packages of the build base. KVER must match the guest kernel.
chain_base_packages() {
	echo "gcc libc6-dev make binutils kmod linux-headers-$KVER"
}

# Apt sources for mmdebstrap: the host's Debian sources (the security suite
# carries the current kernel ABI).
chain_apt_sources() {
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		cat /etc/apt/sources.list.d/debian.sources
	else
		grep -h '^deb ' /etc/apt/sources.list 2>/dev/null
	fi
}

# Sets BASE_KEY: a hash of the suite, the sources, the package list and the
# candidate version of each package (apt-cache, i.e. the mirror as of the
# last apt-get update) and CHAIN_BASE_RECIPE, so the base is remade when any
# moves. Bump CHAIN_BASE_RECIPE when chain_make_base changes what it makes.
CHAIN_BASE_RECIPE=2
chain_base_key() {
	local p v
	BASE_KEY=$({
		echo "bookworm minbase"
		chain_apt_sources
		for p in $(chain_base_packages); do
			v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
			[ -n "$v" ] && [ "$v" != "(none)" ] || { echo "NOVERSION $p"; continue; }
			echo "$p=$v"
		done
		echo "recipe $CHAIN_BASE_RECIPE"
	} | sha256sum | cut -c1-16)
	# A package apt does not know makes the base impossible: say so now.
	for p in $(chain_base_packages); do
		v=$(apt-cache policy "$p" 2>/dev/null | sed -n 's/^ *Candidate: //p')
		[ -n "$v" ] && [ "$v" != "(none)" ] ||
			{ chain_fail "apt knows no candidate for $p (apt-get update, or the kernel ABI moved)"; return 1; }
	done
}

# What a module build never runs, removed from the base: the real node's
# build pod pulls and unpacks the base under TCG, where every megabyte
# counts. Perl and its modules (only usrmerge needs them, after it ran), gcc's
# LTO compiler and dumper, the sanitizer and gprofng runtimes, apt, the
# headers of other architectures, apt's lists and the documentation.
chain_base_trim_hook() {
	cat <<'HOOK'
set -e
chroot "$1" dpkg --purge --force-depends --force-remove-essential usrmerge libfile-find-rule-perl \
	libnumber-compare-perl libtext-glob-perl perl perl-modules-5.36 libperl5.36 apt libapt-pkg6.0 >/dev/null
rm -rf "$1"/usr/lib/gcc/x86_64-linux-gnu/12/lto1 \
	"$1"/usr/bin/x86_64-linux-gnu-lto-dump-12 "$1"/usr/lib/x86_64-linux-gnu/lib*san.so* \
	"$1"/usr/lib/gcc/x86_64-linux-gnu/12/lib*san*.a "$1"/usr/lib/x86_64-linux-gnu/libgprofng* \
	"$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old "$1"/usr/share/doc/* \
	"$1"/usr/share/man/* "$1"/usr/share/info/*
for a in "$1"/usr/src/linux-headers-*-common/arch/*; do
	[ "${a##*/}" = x86 ] || rm -rf "$a"
done
HOOK
}

# mmdebstrap's root filesystem, trimmed, imported as a one-layer image and
# written to the cache as an OCI layout (gzip'ed).
chain_make_base() {
	local out=$1 tar=$CHAIN_WORK/base.tar c log=$CHAIN_WORK/mmdebstrap.log srcs
	srcs=$CHAIN_WORK/base.sources
	chain_apt_sources >"$srcs"
	[ -s "$srcs" ] || { chain_fail "no Debian apt sources on this host"; return 1; }
	mmdebstrap --variant=minbase --mode=root --format=tar \
		--include="$(chain_base_packages | tr ' ' ',')" \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --customize-hook="$(chain_base_trim_hook)" --skip=output/dev \
		bookworm "$tar" "$srcs" >"$log" 2>&1 ||
		{ chain_fail "mmdebstrap failed: $(grep -m3 -iE 'error|E:' "$log" | tr '\n' ' ')"; return 1; }
	c=$(chain_buildah from scratch) &&
		chain_buildah add "$c" "$tar" / >/dev/null &&
		chain_buildah config --cmd '["/bin/bash"]' --label "kmm.chain.kernel=$KVER" \
			--label "kmm.chain.packages=$(chain_base_packages)" "$c" &&
		chain_buildah commit --quiet --format oci --timestamp 0 --rm "$c" localhost/kmm/chain-base:build >/dev/null ||
		{ chain_fail "importing the mmdebstrap tarball failed"; return 1; }
	rm -f "$tar"
	rm -rf "$out.tmp"
	chain_buildah push localhost/kmm/chain-base:build "oci:$out.tmp:base" >/dev/null 2>&1 &&
		mv "$out.tmp" "$out" ||
		{ chain_fail "writing the base to the cache failed"; return 1; }
	chain_buildah rmi localhost/kmm/chain-base:build >/dev/null 2>&1
	return 0
}

# Makes (or reuses) the cached base for KVER and pushes it to the registry as
# $CHAIN_REGISTRY/kmm/debian-kbuild:$KVER. Sets BASE_IMAGE, BASE_CACHED=0|1.
chain_base() {
	local dir lock
	chain_base_key || return 1
	dir=$KMM_CHAIN_CACHE/base-$KVER-$BASE_KEY
	BASE_CACHED=1
	mkdir -p "$KMM_CHAIN_CACHE" || return 1
	# One maker at a time (two suites, or a suite and the cookbook); the
	# others wait for its result instead of running mmdebstrap again.
	exec {lock}>"$KMM_CHAIN_CACHE/.lock" && flock "$lock" || { chain_fail "cannot lock $KMM_CHAIN_CACHE"; return 1; }
	if [ ! -f "$dir/index.json" ]; then
		BASE_CACHED=0
		if ! chain_make_base "$dir"; then
			exec {lock}>&-
			return 1
		fi
		# Older bases of this kernel are superseded.
		find "$KMM_CHAIN_CACHE" -maxdepth 1 -name "base-$KVER-*" ! -name "base-$KVER-$BASE_KEY" \
			-exec rm -rf {} + 2>/dev/null
	fi
	exec {lock}>&-
	BASE_IMAGE=$CHAIN_REGISTRY/kmm/debian-kbuild:$KVER
	skopeo copy --quiet --dest-tls-verify=false "oci:$dir:base" "docker://$BASE_IMAGE" \
		>"$CHAIN_WORK/base-push.log" 2>&1 ||
		chain_fail "pushing the base to $BASE_IMAGE failed: $(tail -n 2 "$CHAIN_WORK/base-push.log" | tr '\n' ' ')"
}

# Manifest digest of a registry image (sha256:...).
chain_digest() {
	skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$1" 2>/dev/null
}

# Layer digests of a registry image, one a line, base first.
chain_layers() {
	skopeo inspect --tls-verify=false --raw "docker://$1" 2>/dev/null | jq -r '.layers[].digest'
}

# The module sources (tests/vm/modules) as a FROM-scratch image holding
# /src; the sample Dockerfile copies them from SOURCE_IMAGE.
chain_source_image() {
	local ref=$1 ctx=$CHAIN_WORK/src-ctx
	rm -rf "$ctx" && mkdir -p "$ctx/src" &&
		cp "$VM_LIB_DIR"/modules/*.c "$VM_LIB_DIR"/modules/Kbuild "$ctx/src/" || return 1
	printf 'FROM scratch\nCOPY src /src\n' >"$ctx/Containerfile"
	chain_bud -t "$ref" "$ctx" >"$CHAIN_WORK/src-image.log" 2>&1 &&
		chain_buildah push "$ref" "docker://$ref" >>"$CHAIN_WORK/src-image.log" 2>&1 ||
		chain_fail "source image $ref: $(tail -n 2 "$CHAIN_WORK/src-image.log" | tr '\n' ' ')"
}

# images/sign/Containerfile over the static kmm-sign, pushed as $1.
chain_sign_image() {
	local ref=$1 ctx=$CHAIN_WORK/sign-ctx
	rm -rf "$ctx" && mkdir -p "$ctx" && cp "$SIGN_STATIC" "$ctx/kmm-sign" || return 1
	chain_bud -f "$KMM_SOURCE_DIR/images/sign/Containerfile" -t "$ref" "$ctx" >"$CHAIN_WORK/sign-image.log" 2>&1 &&
		chain_buildah push "$ref" "docker://$ref" >>"$CHAIN_WORK/sign-image.log" 2>&1 ||
		chain_fail "sign image $ref: $(tail -n 2 "$CHAIN_WORK/sign-image.log" | tr '\n' ' ')"
}

# What the build pod runs for one kmmctl plan entry (JSON file $1): the
# Dockerfile $2 (the ConfigMap's key `dockerfile`, which the pod mounts as
# /workspace/Dockerfile) in an otherwise empty context, every build arg of
# the plan (the Module's plus the four kmm injects), push to the plan's
# destination. Log in $CHAIN_WORK/build.log.
chain_build() {
	local plan=$1 dockerfile=$2 ws=$CHAIN_WORK/workspace dest args=() a
	dest=$(jq -r '.build.destination // empty' "$plan")
	[ -n "$dest" ] || { chain_fail "the plan has no build step"; return 1; }
	[ -s "$dockerfile" ] || { chain_fail "empty Dockerfile $dockerfile"; return 1; }
	rm -rf "$ws" && mkdir -p "$ws" && cp "$dockerfile" "$ws/Dockerfile" || return 1
	while IFS= read -r a; do
		args+=(--build-arg "$a")
	done < <(jq -r '.build.buildArgs[] | "\(.name)=\(.value)"' "$plan")
	{
		echo "+ buildah bud ${args[*]} -f Dockerfile -t $dest"
		chain_bud "${args[@]}" -f "$ws/Dockerfile" -t "$dest" "$ws" &&
			chain_buildah push "$dest" "docker://$dest"
	} >>"$CHAIN_WORK/build.log" 2>&1 ||
		chain_fail "build of $dest failed: $(grep -v '^\(Copying\|Writing\|Storing\|Getting\)' "$CHAIN_WORK/build.log" | tail -n 4 | tr '\n' ' ')"
}

# Writes the sign pod's Dockerfile for plan $1 to $2: stage source = the
# unsigned image ($4, default the plan's unsignedImage), stage signimage =
# the kmm-sign image $3 with <dirName> copied to /opt<dirName> and each
# filesToSign signed there in place, final stage = the unsigned image with
# /opt<dirName> copied back over <dirName> (one layer on top of its own).
chain_sign_dockerfile() {
	local plan=$1 out=$2 signimage=$3 unsigned=${4:-} dir exec
	[ -n "$unsigned" ] || unsigned=$(jq -r '.sign.unsignedImage' "$plan")
	dir=$(jq -r '.workerConfig.modprobe.dirName // "/opt"' "$plan")
	# Glob entries go through as they are: the image has no shell, kmm-sign
	# expands them itself (and skips a pattern that matches nothing, as
	# upstream's shell loop does).
	exec=$(jq -c '["/usr/local/bin/kmm-sign", "sign", "--key", "/run/secrets/key/key.pem",
		"--cert", "/run/secrets/cert/cert.pem"] + [.sign.filesToSign[] | "/opt" + .]' "$plan")
	cat >"$out" <<DOCKERFILE
FROM $unsigned AS source

FROM $signimage AS signimage
COPY --from=source $dir /opt$dir
RUN --mount=type=secret,id=key,target=/run/secrets/key/key.pem --mount=type=secret,id=cert,target=/run/secrets/cert/cert.pem $exec

FROM source
COPY --from=signimage /opt$dir $dir
DOCKERFILE
}

# What the sign pod runs: chain_sign_dockerfile, the key and certificate as
# build secrets (never in a layer), push to $5 (default the plan's
# destination). Args: PLAN KEY CERT SIGNIMAGE [DEST] [UNSIGNED]. Log in
# $CHAIN_WORK/sign.log.
chain_sign() {
	local plan=$1 key=$2 cert=$3 signimage=$4 dest=${5:-} unsigned=${6:-} ws=$CHAIN_WORK/sign-ws
	[ -n "$dest" ] || dest=$(jq -r '.sign.destination' "$plan")
	rm -rf "$ws" && mkdir -p "$ws" || return 1
	chain_sign_dockerfile "$plan" "$ws/Dockerfile" "$signimage" "$unsigned" || return 1
	{
		echo "+ buildah bud (sign) -t $dest"
		cat "$ws/Dockerfile"
		chain_bud --secret "id=key,src=$key" --secret "id=cert,src=$cert" \
			-f "$ws/Dockerfile" -t "$dest" "$ws" &&
			chain_buildah push "$dest" "docker://$dest"
	} >>"$CHAIN_WORK/sign.log" 2>&1 ||
		chain_fail "signing into $dest failed: $(grep -v '^\(Copying\|Writing\|Storing\|Getting\)' "$CHAIN_WORK/sign.log" | tail -n 4 | tr '\n' ' ')"
}

# A test signing key: RSA 2048 with a self-signed code-signing certificate
# named $3. Writes $1 (key, PEM), $2 (certificate, PEM) and $2.der.
chain_make_key() {
	local key=$1 cert=$2 cn=$3 cnf=$CHAIN_WORK/x509.cnf
	printf '%s\n' '[ req ]' 'distinguished_name = dn' 'prompt = no' 'x509_extensions = ext' \
		'[ dn ]' 'O = kmm' "CN = $cn" '[ ext ]' 'basicConstraints = critical,CA:FALSE' \
		'keyUsage = digitalSignature' 'extendedKeyUsage = codeSigning' \
		'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid' >"$cnf"
	openssl req -new -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -config "$cnf" \
		-keyout "$key" -out "$cert" >/dev/null 2>&1 &&
		openssl x509 -in "$cert" -outform DER -out "$cert.der" ||
		chain_fail "openssl could not make the key '$cn'"
}

# Sets EFI_KERNEL: the bzImage (EFI stub) for KVER, signed with OVMF's snakeoil
# key so the firmware's db accepts it (newer OVMF refuses an unverified
# -kernel), cached per KVER.
chain_efi_kernel() {
	local dir=$KMM_CHAIN_CACHE/kernel-$KVER key
	EFI_KERNEL=$dir/vmlinuz.snakeoil
	[ -s "$EFI_KERNEL" ] && return 0
	vm_prepare_kernel || { chain_fail "$VM_ERR"; return 1; }
	[ -s "$KMM_VM_CACHE/$KVER/vmlinuz" ] || { chain_fail "no vmlinuz for $KVER in $KMM_VM_CACHE"; return 1; }
	mkdir -p "$dir" || return 1
	key=$CHAIN_WORK/snakeoil.key
	openssl rsa -in /usr/share/ovmf/PkKek-1-snakeoil.key -passin pass:snakeoil -out "$key" 2>/dev/null &&
		sbsign --key "$key" --cert /usr/share/ovmf/PkKek-1-snakeoil.pem \
			--output "$EFI_KERNEL.tmp" "$KMM_VM_CACHE/$KVER/vmlinuz" >/dev/null 2>&1 &&
		mv "$EFI_KERNEL.tmp" "$EFI_KERNEL" ||
		chain_fail "sbsign of the kernel with the snakeoil key failed"
	rm -f "$key"
	[ -s "$EFI_KERNEL" ]
}

# $1: a writable copy of OVMF's Secure Boot variable store (snakeoil PK, KEK
# and db, Secure Boot on) with certificate $2 (DER) added as MokListRT.
chain_vars() {
	cp /usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd "$1" &&
		python3 "$CHAIN_LIB_DIR/efivars.py" "$1" MokListRT "$2" ||
		chain_fail "cannot add MokListRT to the OVMF variable store"
}

# Boots the Secure Boot guest: OVMF (SMM build) with variable store $2, the
# snakeoil-signed kernel, initrd $1, module.sig_enforce=1 and extra kernel
# arguments $4; serial output to $3. No network.
chain_boot() {
	timeout "$KMM_VM_TIMEOUT" qemu-system-x86_64 -accel tcg -machine q35,smm=on \
		-global driver=cfi.pflash01,property=secure,value=on -m 1024 -smp 1 \
		-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd \
		-drive if=pflash,format=raw,file="$2" \
		-kernel "$EFI_KERNEL" -initrd "$1" \
		-append "console=ttyS0 panic=-1 quiet module.sig_enforce=1 ${4:-}" \
		-nographic -no-reboot -nic none </dev/null >"$3" 2>&1
}
