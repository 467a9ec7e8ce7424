#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm's images (scripts/images, docs/images.md), built once and pushed to the
# testenv's registry, then read back from it:
#   - each image's manifest and config: OCI media types, the
#     org.opencontainers.image.* labels (title, version = the tag = git
#     describe, revision = HEAD, created, licenses), user (non-root for the
#     operator and webhook, root for the worker, sign and builder), entrypoint;
#   - its files: no /bin/sh (nor apt, dpkg) where none is needed, a shell in
#     the builder; every binary answers --version inside the unpacked root
#     filesystem (chroot), so the libraries copied in are complete;
#   - sizes: scripts/images' sizes.tsv matches the registry's manifests, and
#     docs/images.md's table is within a factor 1.5 of what was measured;
#   - the builder runs the buildah build pod's script (bud with a RUN step,
#     push) inside its own root filesystem;
#   - FROM-scratch kmod images in a cluster (docs/worker.md): the worker pod's
#     two init containers, played with buildah and runc from the pushed
#     images: install-copier (kmm-worker, as nobody) puts the static
#     kmm-worker-copy into a shared directory, image-extractor runs it inside
#     a FROM-scratch kmod image; kmm-worker then loads from what it copied
#     (under tests/unit/kmod's fake kernel). For an image built the upstream
#     way (a shell and cp) the copier's tree equals what upstream's
#     `/bin/sh -c "cp -R ..."` extracts, firmware included.
# Reuses the release build ($KMM_IMAGES_BUILD, default build/release, which
# tests/run's build stage makes).
set -u

for v in KMM_BUILD_DIR KMM_SOURCE_DIR KMM_TESTENV_REGISTRY; do
	if [ -z "${!v:-}" ]; then
		echo "1..1"
		echo "not ok 1 - prerequisites # $v is not set (run under tests/run, or eval \"\$(tests/env/testenv env)\")"
		exit 1
	fi
done
IMAGES=(kmm-operator kmm-webhook kmm-worker kmm-sign kmm-builder)
CASES=(prerequisites build sizes manifests contents builder-build-pod copier-scratch copier-upstream-image)
echo "1..$((${#CASES[@]} - 1 + ${#IMAGES[@]}))"

n=0
failed=0
BROKEN=
pass() {
	n=$((n + 1))
	echo "ok $n - $1${2:+ # $2}"
}
fail() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	local l
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
}
# case NAME FUNCTION: runs FUNCTION unless a step it depends on failed; the
# function explains a failure in $WHY. NOTE (optional) is appended as a comment.
case_() {
	local name=$1 t0
	shift
	if [ -n "$BROKEN" ]; then
		fail "$name" "not run: '$BROKEN' failed"
		return 1
	fi
	WHY=
	NOTE=
	t0=$(date +%s)
	if "$@"; then
		pass "$name" "$NOTE${NOTE:+, }$(($(date +%s) - t0)) s"
		return 0
	fi
	fail "$name" "${WHY:-failed without a reason}"
	return 1
}
why() {
	WHY=$*
	return 1
}

W=$(mktemp -d /tmp/kmm-images-test.XXXXXX)
cleanup() {
	bah rm --all >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
export CONTAINERS_REGISTRIES_CONF=$W/registries.conf
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' \
	"$KMM_TESTENV_REGISTRY" >"$CONTAINERS_REGISTRIES_CONF"
bah() {
	buildah --root "$W/store" --runroot "$W/run" --storage-driver vfs "$@"
}
REG=$KMM_TESTENV_REGISTRY/kmm-images-test
SHIM=$KMM_BUILD_DIR/tests/unit/kmod/libkmm-kmod-shim.so
FX=$KMM_BUILD_DIR/tests/unit/kmod
KVER=9.9.9-test

s_prereq() {
	local missing=() t f
	for t in buildah runc skopeo jq python3 chroot unshare depmod busybox readelf; do
		command -v "$t" >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin command -v "$t" >/dev/null 2>&1 ||
			missing+=("$t")
	done
	for f in "$KMM_BUILD_DIR/src/worker/kmm-worker" "$SHIM" "$FX/fx_a.ko" "$FX/fx_b.ko"; do
		[ -e "$f" ] || missing+=("$f")
	done
	PATH=$PATH:/sbin:/usr/sbin
	[ "$(id -u)" = 0 ] || missing+=("root (buildah's store, chroot)")
	[ ${#missing[@]} -eq 0 ] || why "missing: ${missing[*]} (scripts/install-deps)"
}

s_build() {
	local out
	out=$(KMM_IMAGES_BUILD=${KMM_IMAGES_BUILD:-$KMM_SOURCE_DIR/build/release} KMM_IMAGES_OUT=$W/out \
		nice -n 5 "$KMM_SOURCE_DIR/scripts/images" build --push "$REG" --insecure 2>&1) ||
		why "scripts/images build failed: $(tail -n 15 <<<"$out")" || return 1
	printf '%s\n' "$out" >"$W/build.log"
	TAG=$(awk -F'\t' 'NR == 2 { print $2 }' "$W/out/sizes.tsv")
	[ -n "$TAG" ] || why "no tag in sizes.tsv" || return 1
	# git describe's form (the binaries' --version, checked in the contents cases).
	# git describe's form: <tag>[-N-g<hash>][-dirty], or <version>-g<hash>[-dirty].
	if [[ $TAG =~ -g([0-9a-f]{7,})(-dirty)?$ ]]; then
		REVISION=${BASH_REMATCH[1]}
	else
		REVISION=${TAG%-dirty}
	fi
	REVISION=$(git -C "$KMM_SOURCE_DIR" rev-parse --verify -q "$REVISION^{commit}") ||
		why "tag $TAG names no commit (not git describe's form)" || return 1
	fetch_images || return 1
	NOTE="tag $TAG"
}

# Reads each image back from the registry into an OCI layout and unpacks it.
fetch_images() {
	local name
	for name in "${IMAGES[@]}"; do
		skopeo copy --quiet --src-tls-verify=false "docker://$REG/$name:$TAG" "oci:$W/pulled:$name" \
			>"$W/copy.log" 2>&1 || why "cannot read $REG/$name:$TAG back: $(tail -n 3 "$W/copy.log")" || return 1
		skopeo inspect --tls-verify=false --raw "docker://$REG/$name:$TAG" >"$W/$name.manifest" &&
			skopeo inspect --tls-verify=false --config "docker://$REG/$name:$TAG" >"$W/$name.config" ||
			why "skopeo inspect $name failed" || return 1
	done
	python3 - "$W/pulled" "$W/root" "${IMAGES[@]}" <<'EOF' || why "unpacking the images failed"
import json, os, sys, tarfile
layout, roots, names = sys.argv[1], sys.argv[2], sys.argv[3:]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
for name in names:
    m = [x for x in index["manifests"]
         if x["annotations"]["org.opencontainers.image.ref.name"] == name][0]
    man = json.load(open(blob(m["digest"])))
    root = os.path.join(roots, name)
    os.makedirs(root)
    for layer in man["layers"]:
        with tarfile.open(blob(layer["digest"])) as t:
            for member in t.getmembers():
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    sys.exit(f"{name}: hostile layer entry {member.name}")
            t.extractall(root, numeric_owner=True)
EOF
}

s_sizes() {
	local name packed row doc
	[ "$(wc -l <"$W/out/sizes.tsv")" = $((${#IMAGES[@]} + 1)) ] || why "sizes.tsv: $(cat "$W/out/sizes.tsv")" || return 1
	for name in "${IMAGES[@]}"; do
		row=$(awk -F'\t' -v n="$name" '$1 == n' "$W/out/sizes.tsv")
		packed=$(jq '[.layers[].size] | add' "$W/$name.manifest")
		[ "$(cut -f3 <<<"$row")" = "$packed" ] ||
			why "$name: sizes.tsv says $(cut -f3 <<<"$row") compressed, the registry's manifest $packed" || return 1
		[ "$(cut -f4 <<<"$row")" -gt "$packed" ] || why "$name: unpacked not above compressed: $row" || return 1
		# docs/images.md's row: | `name` | compressed MiB | unpacked MiB | ...
		doc=$(awk -F'|' -v n="\`$name\`" '$2 ~ n && $3 ~ /^ *[0-9.]+ *$/ { gsub(/ /, "", $3); print $3; exit }' \
			"$KMM_SOURCE_DIR/docs/images.md")
		[ -n "$doc" ] || why "docs/images.md has no row for $name" || return 1
		python3 -c "import sys; d, m = float(sys.argv[1]) * 1048576, int(sys.argv[2]); sys.exit(not (m / 1.5 <= d <= m * 1.5))" \
			"$doc" "$packed" || why "$name: docs/images.md says $doc MiB compressed, measured $packed bytes: update the table" || return 1
		NOTE="$NOTE${NOTE:+, }$name $((packed / 1024)) KiB"
	done
}

s_manifests() {
	local name want got label
	for name in "${IMAGES[@]}"; do
		got=$(jq -r '.mediaType // "" ' "$W/$name.manifest")
		[ "$got" = application/vnd.oci.image.manifest.v1+json ] || why "$name: manifest media type '$got'" || return 1
		for label in "title=$name" "version=$TAG" "revision=$REVISION" \
			"licenses=Apache-2.0"; do
			got=$(jq -r --arg k "org.opencontainers.image.${label%%=*}" '.config.Labels[$k] // ""' "$W/$name.config")
			[ "$got" = "${label#*=}" ] || why "$name: label ${label%%=*} is '$got', wanted '${label#*=}'" || return 1
		done
		for label in created description; do
			got=$(jq -r --arg k "org.opencontainers.image.$label" '.config.Labels[$k] // ""' "$W/$name.config")
			[ -n "$got" ] || why "$name: no org.opencontainers.image.$label label" || return 1
		done
		case $name in
		kmm-operator | kmm-webhook) want="65532:65532 [\"/usr/local/bin/$name\"]" ;;
		kmm-worker | kmm-sign) want="0:0 [\"/usr/local/bin/$name\"]" ;;
		kmm-builder) want="0:0 null" ;;
		esac
		got="$(jq -r '.config.User' "$W/$name.config") $(jq -c '.config.Entrypoint' "$W/$name.config")"
		[ "$got" = "$want" ] || why "$name: user and entrypoint '$got', wanted '$want'" || return 1
	done
	NOTE="labels, users, entrypoints of ${#IMAGES[@]} images"
}

# An ELF executable without a program interpreter: runs in any root.
static() {
	readelf -lW "$1" >"$W/readelf" 2>&1 && ! grep -q 'program interpreter' "$W/readelf"
}

# Runs a program of an unpacked image inside it: chroot, an empty environment
# but the image's PATH.
in_root() {
	local name=$1 path
	shift
	path=$(jq -r '[.config.Env[]? | select(startswith("PATH="))][0] // "PATH=/usr/local/bin:/usr/bin" ' \
		"$W/$name.config")
	env -i "$path" chroot "$W/root/$name" "$@"
}

s_contents() {
	local name=$1 r=$W/root/$1 bins=() b f out
	case $name in
	kmm-operator) bins=(/usr/local/bin/kmm-operator) ;;
	kmm-webhook) bins=(/usr/local/bin/kmm-webhook) ;;
	kmm-worker) bins=(/usr/local/bin/kmm-worker /usr/local/bin/kmm-worker-pull /usr/local/bin/kmm-worker-copy) ;;
	kmm-sign) bins=(/usr/local/bin/kmm-sign) ;;
	kmm-builder) bins=() ;;
	esac
	for f in bin/sh usr/bin/sh bin/bash usr/bin/bash bin/busybox usr/bin/apt usr/bin/dpkg usr/bin/apt-get; do
		[ -e "$r/$f" ] || [ -L "$r/$f" ] || continue
		[ "$name" = kmm-builder ] && [ "$f" = bin/sh ] && continue
		why "$name holds /$f" || return 1
	done
	for b in "${bins[@]}"; do
		out=$(in_root "$name" "$b" --version 2>&1) || why "$name: $b --version failed: $out" || return 1
		[ "$out" = "$(basename "$b") $TAG" ] || why "$name: $b --version says '$out', wanted '$(basename "$b") $TAG'" || return 1
	done
	case $name in
	kmm-worker)
		# rawArgs: kmm-worker runs `modprobe` from PATH.
		out=$(in_root "$name" modprobe --version 2>&1) || why "kmm-worker: modprobe --version: $out" || return 1
		grep -q '^kmod version' <<<"$out" || why "kmm-worker: modprobe is not kmod: $out" || return 1
		static "$r/usr/local/bin/kmm-worker-copy" ||
			why "kmm-worker-copy is not statically linked" || return 1
		NOTE="kmm-worker, -pull, -copy (static), modprobe run"
		;;
	kmm-sign)
		[ "$(find "$r" -mindepth 1 ! -type d | sed "s|^$r||")" = /usr/local/bin/kmm-sign ] ||
			why "kmm-sign holds more than /usr/local/bin/kmm-sign" || return 1
		;;
	kmm-builder)
		# The build pod's shell and builder, and what buildah reads.
		out=$(in_root "$name" /bin/sh -c 'buildah --version' 2>"$W/err") ||
			why "kmm-builder: /bin/sh -c buildah --version: $out $(cat "$W/err")" || return 1
		for f in etc/containers/policy.json etc/containers/registries.conf etc/containers/containers.conf \
			etc/ssl/certs/ca-certificates.crt; do
			[ -s "$r/$f" ] || why "kmm-builder lacks /$f" || return 1
		done
		# RUN steps ask for exactly what the build pod is granted (buildsign.c's builder_caps)
		local want got
		want=$(sed -n '/builder_caps\[\] = {/,/};/p' "$KMM_SOURCE_DIR/lib/operator/buildsign.c" | grep -o '"[A-Z_]*"' | sort | tr '\n' ' ')
		got=$(sed -n '/default_capabilities/,/]/p' "$r/etc/containers/containers.conf" | grep -o '"[A-Z_]*"' | sort | tr '\n' ' ')
		[ -n "$want" ] && [ "$want" = "$got" ] ||
			why "containers.conf's default_capabilities ($got) are not the build pod's ($want)" || return 1
		NOTE=$out
		;;
	kmm-operator | kmm-webhook)
		# Non-root, so /tmp (kmm-webhook's default --cert-dir) must be writable by all.
		[ "$(stat -c %a "$r/tmp" 2>/dev/null)" = 1777 ] || why "$name: /tmp is not mode 1777" || return 1
		NOTE="no shell; --version ran; /tmp 1777"
		;;
	esac
}

# The build pod's script for `job.builder: buildah` (lib/operator/buildsign.c:
# vfs, chroot isolation, bud then push) run inside the unpacked builder image,
# as its container would: its own root (a mount point), /proc, /dev, /sys.
# The Dockerfile's base is the builder image itself, pulled from the registry,
# and its RUN step runs under buildah's chroot isolation.
s_builder_build() {
	local r=$W/builder-pod ref=$REG/built-by-builder:1 out
	cp -a "$W/root/kmm-builder" "$r" && mkdir -p "$r/proc" "$r/dev" "$r/sys" "$r/workspace" || return 1
	printf 'FROM %s\nRUN ["/bin/sh", "-c", "echo built by kmm-builder > /built"]\n' \
		"$REG/kmm-builder:$TAG" >"$r/workspace/Dockerfile"
	cat >"$W/build-pod.sh" <<EOF
set -e
buildah --storage-driver vfs bud --isolation chroot --tls-verify=false -f /workspace/Dockerfile -t '$ref' /workspace
buildah --storage-driver vfs push --tls-verify=false '$ref' 'docker://$ref'
EOF
	out=$(unshare --mount --pid --fork sh -c 'mount --make-rprivate / && mount --bind "$1" "$1" &&
		mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && mount -t sysfs sysfs "$1/sys" &&
		cd "$1" && exec env -i PATH=/usr/bin:/bin "$(command -v chroot)" "$1" /bin/sh -c "$2"' \
		sh "$r" "$(cat "$W/build-pod.sh")" 2>&1) ||
		why "the build pod's script failed in kmm-builder: $(tail -n 5 <<<"$out")" || return 1
	skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$W/built:built" >/dev/null 2>&1 ||
		why "no $ref in the registry" || return 1
	python3 - "$W/built" <<'PY' || why "the built image lacks /built from its RUN step" || return 1
import json, os, sys, tarfile
layout = sys.argv[1]
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
m = json.load(open(os.path.join(layout, "index.json")))["manifests"][0]
top = json.load(open(blob(m["digest"])))["layers"][-1]
with tarfile.open(blob(top["digest"])) as t:
    sys.exit(t.extractfile("built").read() != b"built by kmm-builder\n")
PY
	NOTE="bud (RUN under chroot isolation) and push from inside the image"
}

# A FROM-scratch kmod image: /opt/lib/modules/KVER (depmod'ed) and /firmware.
make_kmod_tree() {
	local d=$1
	mkdir -p "$d/opt/lib/modules/$KVER/extra" "$d/firmware/vendor" &&
		cp "$FX/fx_a.ko" "$FX/fx_b.ko" "$d/opt/lib/modules/$KVER/extra/" &&
		depmod -b "$d/opt" "$KVER" 2>/dev/null &&
		echo blob >"$d/firmware/vendor/fw.bin" && ln -s vendor/fw.bin "$d/firmware/fw-link.bin"
}

# The worker pod's init containers with real containers (runc): install-copier
# in the kmm-worker image as nobody, then image-extractor in IMAGE (the copier
# args of lib/operator/workerpod.c). Args: IMAGE TMPDIR COPIERDIR.
extract_like_the_pod() {
	local image=$1 tmp=$2 bin=$3 c
	mkdir -p "$tmp" "$bin" && chmod 0777 "$tmp" "$bin"
	c=$(bah from --quiet --pull-always "docker://$REG/kmm-worker:$TAG" 2>"$W/from.log") ||
		why "buildah from kmm-worker: $(tail -n 3 "$W/from.log")" || return 1
	bah run --isolation oci --runtime "$(command -v runc)" --network none --user 65534:65534 \
		--volume "$bin:/run/kmm/bin" "$c" -- /usr/local/bin/kmm-worker-copy \
		/usr/local/bin/kmm-worker-copy /run/kmm/bin/kmm-worker-copy >"$W/install.log" 2>&1 ||
		why "install-copier failed: $(tail -n 3 "$W/install.log")" || return 1
	c=$(bah from --quiet --pull-always "docker://$image" 2>"$W/from.log") ||
		why "buildah from $image: $(tail -n 3 "$W/from.log")" || return 1
	bah run --isolation oci --runtime "$(command -v runc)" --network none \
		--volume "$bin:/run/kmm/bin:ro" --volume "$tmp:/tmp" "$c" -- /run/kmm/bin/kmm-worker-copy \
		"/opt/lib/modules/$KVER" "/tmp/opt/lib/modules/$KVER" /firmware /tmp/firmware \
		>"$W/extract.log" 2>&1 || why "image-extractor in $image failed: $(tail -n 3 "$W/extract.log")"
}

s_copier_scratch() {
	local img=$W/kmod-scratch ref=$REG/kmod-scratch:$KVER tmp=$W/pod-tmp root=$W/fake
	make_kmod_tree "$img" || why "cannot make the kmod tree" || return 1
	[ ! -e "$img/bin/sh" ] || return 1
	"$KMM_SOURCE_DIR/tests/env/testenv" image push "$img" "$ref" >"$W/push.log" 2>&1 ||
		why "testenv image push: $(tail -n 3 "$W/push.log")" || return 1
	extract_like_the_pod "$ref" "$tmp" "$W/pod-bin" || return 1
	cmp -s "$FX/fx_b.ko" "$tmp/opt/lib/modules/$KVER/extra/fx_b.ko" &&
		[ -s "$tmp/opt/lib/modules/$KVER/modules.dep.bin" ] &&
		[ "$(cat "$tmp/firmware/vendor/fw.bin")" = blob ] &&
		[ "$(readlink "$tmp/firmware/fw-link.bin")" = vendor/fw.bin ] ||
		why "the extracted tree differs: $(cd "$tmp" && find . | sort | tr '\n' ' ')" || return 1
	# kmm-worker loads from it as in the pod (--image-root /tmp), under the fake kernel.
	mkdir -p "$root/sys/module" "$root/proc" "$root/dev"
	: >"$root/proc/modules"
	: >"$root/dev/kmsg"
	printf 'kernelVersion: %s\ncontainerImage: %s\nmodprobe:\n  moduleName: fx_b\n  dirName: /opt\n  parameters: [p=1]\n' \
		"$KVER" "$ref" >"$W/config.yaml"
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 KMM_SHIM_ROOT=$root \
		KMM_SHIM_UNAME=$KVER LD_PRELOAD=$SHIM "$KMM_BUILD_DIR/src/worker/kmm-worker" kmod load \
		"$W/config.yaml" --image-root "$tmp" >"$W/load.log" 2>&1 ||
		why "kmm-worker kmod load from the extracted files: $(tail -n 3 "$W/load.log")" || return 1
	[ "$(tr '\n' ';' <"$root/calls.log")" = "insmod fx_a ;insmod fx_b p=1;" ] ||
		why "the fake kernel saw: $(cat "$root/calls.log")" || return 1
	NOTE="modules and firmware out of a FROM-scratch image; kmm-worker loaded fx_a, fx_b"
}

# Upstream-style: the same files plus a shell (busybox). The old init
# container's script and the copier give the same tree.
s_copier_upstream() {
	local img=$W/kmod-shell ref=$REG/kmod-shell:$KVER c old=$W/old-tmp out
	make_kmod_tree "$img" || why "cannot make the kmod tree" || return 1
	mkdir -p "$img/bin" && cp "$(command -v busybox)" "$img/bin/busybox" &&
		for t in sh mkdir cp; do ln -s busybox "$img/bin/$t"; done
	static "$img/bin/busybox" || why "busybox is not static (busybox-static)" || return 1
	"$KMM_SOURCE_DIR/tests/env/testenv" image push "$img" "$ref" >"$W/push.log" 2>&1 ||
		why "testenv image push: $(tail -n 3 "$W/push.log")" || return 1
	extract_like_the_pod "$ref" "$W/new-tmp" "$W/pod-bin2" || return 1
	mkdir -p "$old" && chmod 0777 "$old"
	c=$(bah from --quiet --pull-always "docker://$ref" 2>"$W/from.log") || why "buildah from $ref" || return 1
	bah run --isolation oci --runtime "$(command -v runc)" --network none --volume "$old:/tmp" "$c" -- \
		/bin/sh -c "mkdir -p /tmp/opt/lib/modules;cp -R /opt/lib/modules/$KVER /tmp/opt/lib/modules;mkdir -p /tmp/firmware;cp -R /firmware/* /tmp/firmware;" \
		>"$W/old.log" 2>&1 || why "upstream's cp script failed: $(tail -n 3 "$W/old.log")" || return 1
	out=$(diff -r --no-dereference "$old" "$W/new-tmp" 2>&1) || why "the trees differ: $out" || return 1
	NOTE="same tree as upstream's /bin/sh -c cp -R"
}

case_ prerequisites s_prereq || BROKEN=prerequisites
case_ build s_build || BROKEN=${BROKEN:-build}
case_ sizes s_sizes
case_ manifests s_manifests
for name in "${IMAGES[@]}"; do
	case_ "contents: $name" s_contents "$name"
done
case_ builder-build-pod s_builder_build
case_ copier-scratch s_copier_scratch
case_ copier-upstream-image s_copier_upstream
echo "# $((n - failed)) passed, $failed failed"
[ $failed -eq 0 ]
