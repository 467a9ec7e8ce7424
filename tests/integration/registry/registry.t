#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# lib/registry against the testenv's real registries (distribution 2.8): the
# plain-HTTP one and the TLS + basic-auth one. Images are crafted by
# tests/data/registry/make-layouts.py (multi-layer gzip/zstd/tar with
# whiteouts and links, a multi-arch index, hostile layers), pushed with
# skopeo, then checked for existence, pulled and extracted through
# include/kmm/registry.h (tests/unit/registry/registry-itest) and compared
# with the expected trees.
set -u

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	shift
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
bail() { echo "1..1"; echo "not ok 1 - prerequisites"; echo "# $1"; exit 1; }

for v in KMM_BUILD_DIR KMM_SOURCE_DIR KMM_TESTENV_REGISTRY KMM_TESTENV_REGISTRY_TLS \
	KMM_TESTENV_REGISTRY_TLS_CA KMM_TESTENV_REGISTRY_TLS_CERT_DIR KMM_TESTENV_REGISTRY_USER \
	KMM_TESTENV_REGISTRY_PASSWORD KMM_TESTENV_REGISTRY_AUTHFILE; do
	[ -n "${!v:-}" ] || bail "$v is not set (run under tests/run, or eval \"\$(tests/env/testenv env)\")"
done
for c in skopeo python3 zstd openssl; do
	command -v "$c" >/dev/null || bail "$c not found; run scripts/install-deps"
done
itest=$KMM_BUILD_DIR/tests/unit/registry/registry-itest
[ -x "$itest" ] || bail "$itest not built"

PLAIN=$KMM_TESTENV_REGISTRY
TLS=$KMM_TESTENV_REGISTRY_TLS
K=opt/lib/modules/6.1.0-kmm
W=$(mktemp -d "${TMPDIR:-/tmp}/kmm-registry-t.XXXXXX")
trap 'rm -rf "$W"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

# tree DIR: one line per entry, as make-layouts.py writes the .expected files
tree() {
	(cd "$1" && find . -mindepth 1 \( -type d -printf 'd %P %m\n' \) -o \
		\( -type f -printf 'f %P %m %s\n' \) -o \( -type l -printf 'l %P -> %l\n' \) -o \
		-printf '? %P\n' | LC_ALL=C sort)
}

# run NAME ARGS...: runs the itest, output in $out, stderr in $errout, status in $rc
run() {
	out=$("$itest" "$@" 2>"$W/stderr"); rc=$?
	errout=$(cat "$W/stderr")
}

# check_tree NAME DIR EXPECTED_FILE
check_tree() {
	local got
	got=$(tree "$2")
	if [ "$got" = "$(cat "$3")" ]; then ok "$1"; else
		not_ok "$1" "got:" "$got" "want:" "$(cat "$3")" "$errout"
	fi
}

# expect_error NAME FRAGMENT ARGS...: the itest must fail (exit 2) with FRAGMENT in the message
expect_error() {
	local name=$1 frag=$2
	shift 2
	run "$@"
	if [ $rc -eq 2 ] && [[ $errout == *"$frag"* ]]; then ok "$name"; else
		not_ok "$name" "exit $rc, stdout: $out" "stderr: $errout" "wanted: $frag"
	fi
}

echo "1..51"

# 1: fixtures
if python3 "$KMM_SOURCE_DIR/tests/data/registry/make-layouts.py" "$W/data" 2>"$W/mk.log"; then
	ok "make-layouts.py builds the good and hostile layouts"
else
	not_ok "make-layouts.py builds the good and hostile layouts" "$(cat "$W/mk.log")"
fi

push() { # SRC DEST [extra skopeo args]
	local src=$1 dst=$2
	shift 2
	skopeo --insecure-policy copy -q --retry-times 2 "$@" "$src" "$dst" >"$W/skopeo.log" 2>&1
}
tlsargs=(--dest-cert-dir "$KMM_TESTENV_REGISTRY_TLS_CERT_DIR"
	--dest-creds "$KMM_TESTENV_REGISTRY_USER:$KMM_TESTENV_REGISTRY_PASSWORD")

# 2-5: pushes
if push "oci:$W/data/good:v1" "docker://$PLAIN/kmm-itest/good:v1" --dest-tls-verify=false \
	--digestfile "$W/v1.digest"; then ok "push good:v1 to the plain registry"
else not_ok "push good:v1 to the plain registry" "$(cat "$W/skopeo.log")"; fi
if push "oci:$W/data/good:multi" "docker://$PLAIN/kmm-itest/good:multi" --dest-tls-verify=false --all; then
	ok "push the multi-arch index to the plain registry"
else not_ok "push the multi-arch index to the plain registry" "$(cat "$W/skopeo.log")"; fi
if push "oci:$W/data/good:v1" "docker://$TLS/kmm-itest/good:v1" "${tlsargs[@]}"; then
	ok "push good:v1 to the TLS registry"
else not_ok "push good:v1 to the TLS registry" "$(cat "$W/skopeo.log")"; fi
hostile_ok=1
while IFS=$'\t' read -r tag _; do
	push "oci:$W/data/hostile:$tag" "docker://$PLAIN/kmm-itest/hostile:$tag" --dest-tls-verify=false ||
		{ hostile_ok=0; break; }
done <"$W/data/hostile.expected"
if [ $hostile_ok = 1 ]; then ok "push the hostile images to the plain registry"
else not_ok "push the hostile images to the plain registry" "$(cat "$W/skopeo.log")"; fi

# 6: the testenv's own directory-tree push
mkdir -p "$W/tree/$K/extra" "$W/tree/firmware" "$W/tree/usr/bin"
printf 'not a real module\n' >"$W/tree/$K/extra/kmm_ci_a.ko"
printf 'fw\n' >"$W/tree/firmware/a.bin"
printf 'outside\n' >"$W/tree/usr/bin/tool"
if dir_digest=$("$KMM_SOURCE_DIR/tests/env/testenv" image push "$W/tree" kmm-itest/dir:v1 2>"$W/push.log") &&
	[[ $dir_digest == sha256:* ]]; then
	ok "testenv image push of a directory tree"
else
	not_ok "testenv image push of a directory tree" "$(cat "$W/push.log")"
fi

# 7-9: existence
v1_digest=$(cat "$W/v1.digest" 2>/dev/null)
run --insecure exists "$PLAIN/kmm-itest/good:v1"
if [ $rc -eq 0 ] && [ "$out" = "exists $v1_digest" ]; then ok "exists: present tag, digest as pushed"
else not_ok "exists: present tag, digest as pushed" "exit $rc: $out $errout" "pushed: $v1_digest"; fi
run --insecure exists "$PLAIN/kmm-itest/good:nope"
if [ $rc -eq 1 ] && [ "$out" = missing ]; then ok "exists: missing tag is 'does not exist'"
else not_ok "exists: missing tag is 'does not exist'" "exit $rc: $out $errout"; fi
run --insecure exists "$PLAIN/kmm-itest/no-such-repo:v1"
if [ $rc -eq 1 ] && [ "$out" = missing ]; then ok "exists: missing repository is 'does not exist'"
else not_ok "exists: missing repository is 'does not exist'" "exit $rc: $out $errout"; fi

# 10-14: pulls from the plain registry
P=("/$K" /firmware)
run --insecure extract "$PLAIN/kmm-itest/good:v1" "$W/out1" "${P[@]}"
check_tree "extract good:v1 (3 layers gzip/zstd/tar, whiteouts, links) from the plain registry" \
	"$W/out1" "$W/data/good-v1.expected"
run --insecure --arch arm64 extract "$PLAIN/kmm-itest/good:multi" "$W/out2" "${P[@]}"
check_tree "extract the arm64 image from a multi-arch index" "$W/out2" "$W/data/good-multi-arm64.expected"
run --insecure --arch amd64 extract "$PLAIN/kmm-itest/good:multi" "$W/out3" "${P[@]}"
check_tree "extract the amd64 image from a multi-arch index" "$W/out3" "$W/data/good-v1.expected"
run --insecure extract "$PLAIN/kmm-itest/good@$v1_digest" "$W/out4" "${P[@]}"
if [ $rc -eq 0 ] && [ "$out" = "extracted $v1_digest" ]; then
	check_tree "extract by digest reference" "$W/out4" "$W/data/good-v1.expected"
else not_ok "extract by digest reference" "exit $rc: $out $errout"; fi
printf 'd firmware 755\nd opt 755\nd opt/lib 755\nd opt/lib/modules 755\nd %s 755\nd %s/extra 755\nf firmware/a.bin 644 3\nf %s/extra/kmm_ci_a.ko 644 18\n' \
	"$K" "$K" "$K" >"$W/dir.expected"
run --insecure extract "$PLAIN/kmm-itest/dir:v1" "$W/out5" "${P[@]}"
check_tree "extract the testenv-pushed directory image (only the prefixes land)" "$W/out5" "$W/dir.expected"

# 15-23: TLS + basic auth
CA=$KMM_TESTENV_REGISTRY_TLS_CA
AUTH=$KMM_TESTENV_REGISTRY_AUTHFILE
run --ca "$CA" --auth-file "$AUTH" exists "$TLS/kmm-itest/good:v1"
if [ $rc -eq 0 ] && [ "$out" = "exists $v1_digest" ]; then ok "TLS: exists with CA bundle and .dockerconfigjson"
else not_ok "TLS: exists with CA bundle and .dockerconfigjson" "exit $rc: $out $errout"; fi
run --ca "$CA" --auth-file "$AUTH" exists "$TLS/kmm-itest/good:nope"
if [ $rc -eq 1 ]; then ok "TLS: missing tag is 'does not exist'"
else not_ok "TLS: missing tag is 'does not exist'" "exit $rc: $out $errout"; fi
run --ca "$CA" --auth-file "$AUTH" extract "$TLS/kmm-itest/good:v1" "$W/out6" "${P[@]}"
check_tree "TLS: extract with CA bundle and .dockerconfigjson" "$W/out6" "$W/data/good-v1.expected"
run --ca "$CA" --user "$KMM_TESTENV_REGISTRY_USER" --password "$KMM_TESTENV_REGISTRY_PASSWORD" \
	extract "$TLS/kmm-itest/good:v1" "$W/out7" "${P[@]}"
check_tree "TLS: extract with username/password" "$W/out7" "$W/data/good-v1.expected"
expect_error "TLS: wrong password is a clear 401" "HTTP 401: authentication failed" \
	--ca "$CA" --user "$KMM_TESTENV_REGISTRY_USER" --password wrong exists "$TLS/kmm-itest/good:v1"
expect_error "TLS: no credentials is a clear 401" "requires authentication and no credentials" \
	--ca "$CA" exists "$TLS/kmm-itest/good:v1"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/other.key" -out "$W/other.crt" -days 1 \
	-subj "/CN=other-ca" 2>/dev/null
expect_error "TLS: wrong CA is a clear TLS error" "TLS certificate verification failed" \
	--ca "$W/other.crt" --auth-file "$AUTH" exists "$TLS/kmm-itest/good:v1"
run --ca-pem-from "$CA" --auth-text-from "$AUTH" exists "$TLS/kmm-itest/good:v1"
if [ $rc -eq 0 ] && [ "$out" = "exists $v1_digest" ]; then
	ok "TLS: CA bundle and pull secret given as text (the operator's way)"
else not_ok "TLS: CA bundle and pull secret given as text (the operator's way)" "exit $rc: $out $errout"; fi
run --skip-verify --auth-file "$AUTH" exists "$TLS/kmm-itest/good:v1"
if [ $rc -eq 0 ]; then ok "TLS: insecureSkipTLSVerify works without the CA"
else not_ok "TLS: insecureSkipTLSVerify works without the CA" "exit $rc: $out $errout"; fi
expect_error "HTTPS to a plain-HTTP registry is a clear TLS error" "TLS error" \
	exists "$PLAIN/kmm-itest/good:v1"

# 24-25: hostile layers through the registry: each rejected, nothing left behind
bad=()
mkdir -p "$W/hostile"
while IFS=$'\t' read -r tag frag; do
	run --insecure --max-file-bytes 1048576 extract "$PLAIN/kmm-itest/hostile:$tag" "$W/hostile/out" "/$K"
	if [ $rc -ne 2 ] || [[ $errout != *"$frag"* ]] || [[ $errout != *"layer sha256:"* ]]; then
		bad+=("$tag: exit $rc: $errout (wanted: $frag)")
	fi
done <"$W/data/hostile.expected"
if [ ${#bad[@]} -eq 0 ]; then ok "hostile layers rejected with image, layer digest, entry and reason"
else not_ok "hostile layers rejected with image, layer digest, entry and reason" "${bad[@]}"; fi
if [ -d "$W/hostile" ] && [ -z "$(ls -A "$W/hostile")" ]; then ok "rejected pulls leave no target and no staging directory"
else not_ok "rejected pulls leave no target and no staging directory" "$(ls -A "$W/hostile" 2>&1)"; fi

# 26: an OCI layout directory as the source
run extract "oci:$W/data/good:v1" "$W/out8" "${P[@]}"
check_tree "extract from an OCI layout directory" "$W/out8" "$W/data/good-v1.expected"

# 27-28: never hang: refused connection, and a server that accepts but never answers
start=$(date +%s%N)
expect_error "closed port is a clear connect error" "cannot connect" --insecure --timeout-ms 3000 \
	exists "127.0.0.1:1/kmm-itest/good:v1"
python3 - "$W/port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
conns = []
end = time.time() + 30
while time.time() < end:
    s.settimeout(1)
    try:
        conns.append(s.accept()[0])
    except socket.timeout:
        pass
PY
silent=$!
for _ in $(seq 50); do [ -s "$W/port" ] && break; sleep 0.1; done
start=$(date +%s%N)
expect_error "a registry that never answers times out" "timed out" --insecure --timeout-ms 1500 \
	exists "127.0.0.1:$(cat "$W/port" 2>/dev/null)/kmm-itest/good:v1"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "# silent registry: error after ${elapsed_ms} ms (timeout 1500 ms)"
kill "$silent" 2>/dev/null
wait "$silent" 2>/dev/null

# a misbehaving front on another port (front.py): blobs behind a 307 redirect
# to another host, as registries backed by object storage do; tampered and
# oversized blobs; a tampered manifest
python3 "$KMM_SOURCE_DIR/tests/integration/registry/front.py" "$PLAIN" "$W/front.port" 2>"$W/front.log" &
front=$!
for _ in $(seq 50); do [ -s "$W/front.port" ] && break; sleep 0.1; done
F=127.0.0.1:$(cat "$W/front.port" 2>/dev/null)
run --insecure extract "$F/redirect/kmm-itest/good:v1" "$W/out10" "${P[@]}"
check_tree "blobs fetched through a 307 redirect to another host" "$W/out10" "$W/data/good-v1.expected"
mkdir -p "$W/tamper"
expect_error "a tampered blob from the registry is a digest mismatch" "digest mismatch: content is sha256:" \
	--insecure extract "$F/tamper-blob/kmm-itest/good:v1" "$W/tamper/out" "${P[@]}"
expect_error "a blob longer than its descriptor is refused" "its descriptor says" \
	--insecure extract "$F/long-blob/kmm-itest/good:v1" "$W/tamper/out" "${P[@]}"
expect_error "a manifest that does not match its digest is refused" "manifest digest mismatch" \
	--insecure extract "$F/tamper-manifest/kmm-itest/good@$v1_digest" "$W/tamper/out" "${P[@]}"
start=$(date +%s%N)
expect_error "a blob download that stalls times out" "timed out" \
	--insecure --stall-timeout-s 2 extract "$F/stall-blob/kmm-itest/good:v1" "$W/tamper/out" "${P[@]}"
echo "# stalled blob: error after $((($(date +%s%N) - start) / 1000000)) ms (stall timeout 2 s)"
if [ -z "$(ls -A "$W/tamper")" ]; then ok "tampered pulls leave nothing behind"
else not_ok "tampered pulls leave nothing behind" "$(ls -A "$W/tamper")"; fi
# Redirects and token realms are checked where curl connects, before it does.
expect_error "a redirect to the metadata address is refused before connecting" \
	"refused by destination policy: 169.254.169.254 is a cloud metadata address" \
	--insecure --timeout-ms 3000 exists "$F/redirect-metadata/kmm-itest/good:v1"
expect_error "a token realm on the metadata address is refused before connecting" \
	"refused by destination policy: 169.254.169.254 is a cloud metadata address" \
	--insecure --timeout-ms 3000 exists "$F/realm-metadata/kmm-itest/good:v1"
# What a status shows of a hostile error document: the status code, nothing it said.
run --insecure extract "$F/hostile-error/kmm-itest/good:v1" "$W/hostile-error" "${P[@]}"
summary=$(sed -n 's/^summary: //p' "$W/stderr")
if [ $rc -eq 2 ] && [ "$summary" = "registry answered HTTP 500" ]; then
	ok "a hostile error document is summarized without its text"
else not_ok "a hostile error document is summarized without its text" "exit $rc" "summary: $summary"; fi
kill "$front" 2>/dev/null
wait "$front" 2>/dev/null

# destination policy (kmm/registry.h): no traffic leaves 127.0.0.1 for these
expect_error "an image on the metadata address is refused without a connection" \
	"refused by destination policy: 169.254.169.254 is a cloud metadata address" \
	--insecure --timeout-ms 3000 exists "169.254.169.254:80/latest/meta-data:v1"
expect_error "configured denied networks refuse loopback" \
	"127.0.0.1 is in the operator's denied networks" \
	--insecure --deny 127.0.0.0/8 exists "$PLAIN/kmm-itest/good:v1"
expect_error "a host name is refused by the address it resolves to" \
	"in the operator's denied networks" \
	--insecure --deny 127.0.0.0/8 --deny ::1/128 exists "localhost:${PLAIN##*:}/kmm-itest/good:v1"
run --insecure --deny 127.0.0.0/8 --allow 127.0.0.1/32 exists "$PLAIN/kmm-itest/good:v1"
if [ $rc -eq 0 ]; then ok "an allowed network wins over a denied one"
else not_ok "an allowed network wins over a denied one" "exit $rc: $out $errout"; fi

# Docker schema 2 (manifest v2, rootfs.diff.tar.gzip layers) as testenv pushes with --format v2s2
if "$KMM_SOURCE_DIR/tests/env/testenv" image push --format v2s2 "$W/tree" kmm-itest/dir:v2s2 >/dev/null 2>"$W/push.log"; then
	run --insecure extract "$PLAIN/kmm-itest/dir:v2s2" "$W/out11" "${P[@]}"
	check_tree "extract a Docker schema 2 image" "$W/out11" "$W/dir.expected"
else
	not_ok "extract a Docker schema 2 image" "push: $(cat "$W/push.log")"
fi

# 29: target must be empty
mkdir -p "$W/full" && touch "$W/full/keep"
expect_error "a non-empty target is refused" "exists and is not empty" --insecure \
	extract "$PLAIN/kmm-itest/good:v1" "$W/full" "/$K"

# bearer-token flow (token server + registry with auth.token), see bearer.py.
# Basic credentials go to an https realm only; over the plain-http registry
# connection, only to a realm on the registry's own host name.
basic_count() { grep -c '^basic$' "$1" 2>/dev/null; }
if python3 "$KMM_SOURCE_DIR/tests/integration/registry/bearer.py" "$W/bearer" >"$W/bearer.env" 2>"$W/bearer.log"; then
	# shellcheck disable=SC1091
	. "$W/bearer.env"
	push "oci:$W/data/good:v1" "docker://$BEARER_REGISTRY/kmm-itest/good:v1" --dest-tls-verify=false \
		--dest-creds "$BEARER_USER:$BEARER_PASSWORD" || echo "# push to bearer registry: $(cat "$W/skopeo.log")"
	: >"$BEARER_REQUESTS"
	run --insecure --ca "$BEARER_CA" --user "$BEARER_USER" --password "$BEARER_PASSWORD" extract \
		"$BEARER_REGISTRY/kmm-itest/good:v1" "$W/out9" "${P[@]}"
	check_tree "bearer: token fetched from the https realm, image extracted" "$W/out9" "$W/data/good-v1.expected"
	if [ "$(basic_count "$BEARER_REQUESTS")" -ge 1 ]; then ok "bearer: the https realm on the registry's host got the credentials"
	else not_ok "bearer: the https realm on the registry's host got the credentials" "$(cat "$BEARER_REQUESTS")"; fi
	expect_error "bearer: wrong password at the token server is a clear 401" "token request" \
		--insecure --ca "$BEARER_CA" --user "$BEARER_USER" --password wrong exists "$BEARER_REGISTRY/kmm-itest/good:v1"
	kill $BEARER_PIDS 2>/dev/null
else
	not_ok "bearer: token server and registry start" "$(cat "$W/bearer.log")"
	not_ok "bearer: credentials" "not run"
	not_ok "bearer: wrong password" "not run"
fi
# realm_case NAME REALM FRAGMENT: credentials withheld, and the token server saw none
realm_case() {
	local name=$1 realm=$2 frag=$3
	if python3 "$KMM_SOURCE_DIR/tests/integration/registry/bearer.py" "$W/bearer-$realm" "$realm" \
		>"$W/bearer-$realm.env" 2>"$W/bearer-$realm.log"; then
		# shellcheck disable=SC1090
		. "$W/bearer-$realm.env"
		expect_error "bearer: $name: credentials withheld" "$frag" --insecure --ca "$BEARER_CA" \
			--user "$BEARER_USER" --password "$BEARER_PASSWORD" exists "$BEARER_REGISTRY/kmm-itest/good:v1"
		if [ "$(basic_count "$BEARER_REQUESTS")" = 0 ]; then ok "bearer: $name: the token server saw no credentials"
		else not_ok "bearer: $name: the token server saw no credentials" "$(cat "$BEARER_REQUESTS")"; fi
		kill $BEARER_PIDS 2>/dev/null
	else
		not_ok "bearer: $name: token server and registry start" "$(cat "$W/bearer-$realm.log")"
		not_ok "bearer: $name: no credentials seen" "not run"
	fi
}
realm_case "plain-http realm" http "it is not https"
realm_case "https realm on another host, registry over plain http" https-localhost "names another host"

exit $((failed > 0))
