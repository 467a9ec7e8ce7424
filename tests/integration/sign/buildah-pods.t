#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The buildah variant of kmm's build and sign pods (job.builder: buildah),
# run for real: the pod spec comes from kmm_buildsign_pod() (through
# tests/unit/operator/buildsign-render), and the container's /bin/sh script
# runs as the pod would run it, with buildah, vfs storage and chroot
# isolation, in a private mount namespace where /run/secrets holds the key
# and certificate (the Secret volumes), in a scratch store, and with the
# pod's securityContext: its uid, no capability but those it adds (the
# bounding set), no_new_privs for allowPrivilegeEscalation: false; the pod
# must not be privileged. The pod's /workspace is a scratch directory
# holding the Dockerfile (the ConfigMap or the downward-API annotation).
# Nothing is pushed (pushBuiltImage: false): the results are judged in the
# local store:
#   - the sign pod's image: every filesToSign glob match verifies with the
#     certificate, other files are untouched, an unmatched pattern is noted;
#   - the build pod's image: each build arg, hostile ones included, arrives
#     byte for byte (read back from the image's environment), with kmm's
#     four injected args winning over the user's; its RUN step ran as root
#     with exactly the pod's capabilities.
#
# Needs: buildah, unshare and setpriv (util-linux), openssl, jq, ldd, a
# static busybox, root.
# Env: KMM_BUILD_DIR (default build/dev).
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=${KMM_BUILD_DIR:-$top/build/dev}
render=$build/tests/unit/operator/buildsign-render
kmm_sign=$build/src/sign/kmm-sign
K=6.1.0-27-amd64

echo "1..7"
missing=()
for t in buildah unshare setpriv openssl jq ldd busybox; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ -x "$render" ] || missing+=("$render (ninja -C $build)")
[ -x "$kmm_sign" ] || missing+=("$kmm_sign (ninja -C $build)")
[ "$(id -u)" = 0 ] || missing+=("root (buildah chroot isolation, mount namespace)")
if [ ${#missing[@]} -gt 0 ]; then
	echo "# missing: ${missing[*]} (scripts/install-deps)"
	for i in 1 2 3 4 5 6 7; do echo "not ok $i - dependencies"; done
	exit 1
fi

work=$(mktemp -d /tmp/kmm-buildah-pods.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/store" "$work/secrets/key" "$work/secrets/cert" "$work/sign-ctx" \
	"$work/unsigned-ctx/opt/lib/modules/$K/extra" "$work/unsigned-ctx/opt/lib/modules/5.14.0/extra"
openssl req -new -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -subj "/CN=kmm buildah pods" \
	-keyout "$work/secrets/key/key.pem" -out "$work/secrets/cert/cert.pem" >/dev/null 2>&1 ||
	{ echo "# openssl could not make a key"; exit 1; }
for f in "$K/extra/kmm_ci_a.ko" "$K/extra/kmm_ci_b.ko" "$K/extra/other.ko" 5.14.0/extra/kmm_ci_a.ko; do
	head -c 3000 /dev/urandom >"$work/unsigned-ctx/opt/lib/modules/$f"
done
# A static busybox gives the build's RUN step something to run.
mkdir -p "$work/unsigned-ctx/bin"
cp "$(command -v busybox)" "$work/unsigned-ctx/bin/busybox"
printf 'FROM scratch\nCOPY opt /opt\nCOPY bin /bin\n' >"$work/unsigned-ctx/Containerfile"
# The kmm-sign image as images/sign/Containerfile makes it, but from this
# build's (dynamically linked) kmm-sign: its libraries go in with it.
cp "$kmm_sign" "$work/sign-ctx/kmm-sign"
mkdir -p "$work/sign-ctx/root"
for lib in $(ldd "$kmm_sign" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
	mkdir -p "$work/sign-ctx/root$(dirname "$lib")" && cp -L "$lib" "$work/sign-ctx/root$lib"
done
printf 'FROM scratch\nCOPY root /\n' >"$work/sign-ctx/Containerfile"
sed -n '/^FROM/,$p' "$top/images/sign/Containerfile" | sed 1d >>"$work/sign-ctx/Containerfile"

# Sign entry: no build, an unsigned image, an upstream-style glob and one
# that matches nothing.
cat >"$work/sign-mbsc.json" <<JSON
{"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "ModuleBuildSignConfig",
 "metadata": {"name": "kmm-ci", "namespace": "ns1", "uid": "u1"},
 "spec": {"pushBuiltImage": false, "images": [{"image": "localhost/kmm-ci:signed",
  "kernelVersion": "$K", "action": "SignImage",
  "sign": {"unsignedImage": "localhost/kmm-ci:unsigned", "keySecret": {"name": "k"},
   "certSecret": {"name": "c"},
   "filesToSign": ["/opt/lib/modules/*/extra/kmm_ci_?.ko", "/opt/lib/modules/none/*.ko"]}}]}}
JSON
# Build entry: hostile build args, one of them named like an injected one.
# shellcheck disable=SC2016 # the point: nothing in it may expand
hostile="x' ; touch /tmp/kmm-pwned ; echo '"$'\n''$(id) `id` "q" \ * $HOME'
jq -n --arg k "$K" --arg h "$hostile" '{apiVersion: "kmm.sigs.x-k8s.io/v1beta1",
  kind: "ModuleBuildSignConfig", metadata: {name: "kmm-ci", namespace: "ns1", uid: "u1"},
  spec: {pushBuiltImage: false, images: [{image: "localhost/kmm-ci:built", kernelVersion: $k,
    action: "BuildImage", build: {dockerfileConfigMap: {name: "df"},
      buildArgs: [{name: "HOSTILE", value: $h}, {name: "MOD_NAME", value: "not-this"}]}}]}}' \
	>"$work/build-mbsc.json"
# shellcheck disable=SC2016 # buildah expands the Dockerfile's $ARGs
printf '%s\n' 'FROM localhost/kmm-ci:unsigned' 'ARG HOSTILE' 'ARG MOD_NAME' 'ARG MOD_NAMESPACE' \
	'ARG KERNEL_VERSION' 'ARG KERNEL_FULL_VERSION' \
	'ENV HOSTILE=$HOSTILE MOD_NAME=$MOD_NAME MOD_NAMESPACE=$MOD_NAMESPACE KERNEL_VERSION=$KERNEL_VERSION KERNEL_FULL_VERSION=$KERNEL_FULL_VERSION' \
	'RUN ["/bin/busybox", "touch", "/ran"]' \
	>"$work/build-dockerfile"

rendered=0
for what in sign:script sign:dockerfile build:script sign:pod build:pod; do
	"$render" "$work/${what%%:*}-mbsc.json" buildah quay.io/buildah/stable localhost/kmm-sign:t \
		"${what#*:}" >"$work/${what%%:*}.${what#*:}" 2>"$work/render.err" || rendered=1
done
# The pod's /workspace is this scratch directory.
mkdir -p "$work/sign-ws" "$work/build-ws"
cp "$work/sign.dockerfile" "$work/sign-ws/Dockerfile"
cp "$work/build-dockerfile" "$work/build-ws/Dockerfile"
sed "s#/workspace#$work/sign-ws#g" "$work/sign.script" >"$work/sign.sh"
sed "s#/workspace#$work/build-ws#g" "$work/build.script" >"$work/build.sh"

# The container's securityContext as a setpriv command line: its uid, a
# bounding set of exactly the capabilities it adds (what a runtime gives a
# container that drops ALL), no_new_privs for allowPrivilegeEscalation: false.
# Empty when the pod asks for what setpriv cannot give: privileged.
as_pod() { # pod.json
	jq -r '.spec.containers[0].securityContext as $s |
		if ($s.privileged // false) or ($s.capabilities.drop != ["ALL"]) then "" else
		"setpriv --reuid \($s.runAsUser // 0) --regid 0 --clear-groups --inh-caps -all " +
		"--bounding-set -all" + ([($s.capabilities.add // [])[] | ",+" + ascii_downcase] | join("")) +
		(if $s.allowPrivilegeEscalation == false then " --no-new-privs" else "" end) + " --"
		end' "$1"
}
sign_as=$(as_pod "$work/sign.pod")
build_as=$(as_pod "$work/build.pod")
printf '%s\n' "sign: $sign_as" "build: $build_as" >"$work/as-pod.log"
# The pod's store is its own root filesystem: here a scratch directory, the
# script itself (its default /var/lib/containers/storage) unchanged.
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' "$work/store" "$work/run" \
	>"$work/storage.conf"
export CONTAINERS_STORAGE_CONF=$work/storage.conf
# Notes what the container's process has, then runs the container's script.
# shellcheck disable=SC2016 # expanded by the inner shell
printf '%s\n' 'setpriv -d | sed -n "s/^Capability bounding set: //p" >"$1"; id -u >>"$1"' \
	'exec /bin/sh -c "$(cat "$2")"' >"$work/in-pod.sh"

# Everything that touches /run happens in here.
cat >"$work/inner.sh" <<EOF
set -u
mount -t tmpfs tmpfs /run && mkdir -p /run/secrets &&
	cp -r "$work/secrets/key" "$work/secrets/cert" /run/secrets/ || exit 10
[ -n "$sign_as" ] && [ -n "$build_as" ] || exit 12
B="buildah --storage-driver vfs"
\$B bud --isolation chroot -f "$work/sign-ctx/Containerfile" -t localhost/kmm-sign:t "$work/sign-ctx" &&
	\$B bud --isolation chroot -f "$work/unsigned-ctx/Containerfile" -t localhost/kmm-ci:unsigned \
		"$work/unsigned-ctx" >"$work/images.log" 2>&1 || exit 11
$sign_as /bin/sh "$work/in-pod.sh" "$work/sign.caps" "$work/sign.sh" >"$work/sign.log" 2>&1
echo \$? >"$work/sign.rc"
$build_as /bin/sh "$work/in-pod.sh" "$work/build.caps" "$work/build.sh" >"$work/build.log" 2>&1
echo \$? >"$work/build.rc"
c=\$(\$B from localhost/kmm-ci:signed 2>/dev/null) && m=\$(\$B mount "\$c") &&
	cp -r "\$m/opt" "$work/signed-opt"
c=\$(\$B from localhost/kmm-ci:built 2>/dev/null) && m=\$(\$B mount "\$c") &&
	[ -e "\$m/ran" ] && touch "$work/build-ran"
\$B inspect --type image localhost/kmm-ci:built >"$work/built.json" 2>>"$work/build.log"
\$B rm --all >/dev/null 2>&1
\$B rmi --all --force >/dev/null 2>&1
exit 0
EOF
unshare -m --propagation private bash "$work/inner.sh" >"$work/inner.log" 2>&1
inner=$?
n=0
failed=0
ok() { # name status log
	n=$((n + 1))
	if [ "$2" = 0 ]; then
		echo "ok $n - $1"
	else
		failed=1
		echo "not ok $n - $1"
		[ -n "${3:-}" ] && [ -f "$3" ] && tail -n 15 "$3" | sed 's/^/# /'
	fi
}

[ $rendered = 0 ] && [ $inner = 0 ]
ok "render the pods, build the kmm-sign and unsigned images (buildah, vfs, chroot)" $? \
	"$([ $rendered = 0 ] && echo "$work/inner.log" || echo "$work/render.err")"
# What each script ran with: uid 0 and a bounding set of exactly the pod's
# capabilities; the build's RUN step ran under them.
caps_ran() { # caps-file pod.json
	[ "$(sed -n 2p "$1" 2>/dev/null)" = 0 ] || return 1
	[ "$(head -n 1 "$1" | tr , '\n' | sort)" = \
		"$(jq -r '.spec.containers[0].securityContext.capabilities.add[] | ascii_downcase' "$2" | sort)" ]
}
[ -n "$sign_as" ] && [ -n "$build_as" ] && caps_ran "$work/sign.caps" "$work/sign.pod" &&
	caps_ran "$work/build.caps" "$work/build.pod" && [ -e "$work/build-ran" ]
ok "not privileged: the scripts and a RUN step ran as root with only the pods' capabilities" $? \
	"$work/as-pod.log"
[ "$(cat "$work/sign.rc" 2>/dev/null)" = 0 ]
ok "the sign pod's script runs to completion" $? "$work/sign.log"
mods=$work/signed-opt/lib/modules
"$kmm_sign" verify --cert "$work/secrets/cert/cert.pem" "$mods/$K/extra/kmm_ci_a.ko" \
	"$mods/$K/extra/kmm_ci_b.ko" "$mods/5.14.0/extra/kmm_ci_a.ko" >"$work/verify.log" 2>&1
ok "every glob match in the signed image verifies with the certificate" $? "$work/verify.log"
cmp -s "$mods/$K/extra/other.ko" "$work/unsigned-ctx/opt/lib/modules/$K/extra/other.ko" &&
	grep -q 'no file matches the pattern.*/opt/opt/lib/modules/none/\*\.ko' "$work/sign.log"
ok "a file outside the patterns is untouched; the unmatched pattern is noted" $? "$work/sign.log"
[ "$(cat "$work/build.rc" 2>/dev/null)" = 0 ] && [ ! -e /tmp/kmm-pwned ]
ok "the build pod's script runs, and no build arg ran as a command" $? "$work/build.log"
jq -c '.OCIv1.config.Env // empty' "$work/built.json" >"$work/built-env.json" 2>/dev/null
# jq -e alone would pass on an empty file: the answer must be the one line `true`.
[ "$(jq --arg h "$hostile" --arg k "$K" '
	(map(capture("^(?<n>[A-Z_]+)=(?<v>(.|\n)*)$") | {key: .n, value: .v}) | from_entries) as $e |
	$e.HOSTILE == $h and $e.MOD_NAME == "kmm-ci" and $e.MOD_NAMESPACE == "ns1" and
	$e.KERNEL_VERSION == $k and $e.KERNEL_FULL_VERSION == $k' "$work/built-env.json" \
	2>"$work/env.check")" = true ]
s=$?
[ $s = 0 ] || cat "$work/built-env.json" >>"$work/env.check"
ok "build args arrive byte for byte; kmm's MOD_NAME wins over the Module's" $s "$work/env.check"
exit $failed
