#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm-sign's expansion of filesToSign glob patterns, on a real directory tree
# laid out as the sign stage sees it (/opt<dirName>/lib/modules/<kernel>/...):
# which files end up signed is judged by `kmm-sign verify` and by the
# signature magic at the end of each file, never by kmm-sign's own log.
#
# Needs: openssl. Env: KMM_BUILD_DIR (default build/dev).
set -uo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=${KMM_BUILD_DIR:-$top/build/dev}
kmm_sign=$build/src/sign/kmm-sign
n=0
failed=0

ok() { # name status [diag file]
	n=$((n + 1))
	if [ "$2" = 0 ]; then
		echo "ok $n - $1"
	else
		failed=1
		echo "not ok $n - $1"
		[ -n "${3:-}" ] && [ -f "$3" ] && sed 's/^/# /' "$3" | head -n 20
	fi
}

# Is the file signed (ends with the kernel's signature magic)?
signed() {
	[ "$(tail -c 28 "$1")" = "~Module signature appended~" ]
}

echo "1..8"
work=$(mktemp -d /tmp/kmm-sign-globs.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ ! -x "$kmm_sign" ]; then
	echo "# $kmm_sign is not built (ninja -C $build src/sign/kmm-sign)"
	exit 1
fi
if ! command -v openssl >/dev/null; then
	echo "# openssl is missing (Debian package openssl)"
	exit 1
fi
openssl req -new -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -subj "/CN=kmm globs" \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || {
	echo "# openssl could not make a key"
	exit 1
}

# The tree: two kernels, modules the pattern wants and some it does not.
reset_tree() {
	rm -rf "$work/opt"
	for f in lib/modules/6.1.0-27-amd64/extra/kmm_ci_a.ko lib/modules/6.1.0-27-amd64/extra/kmm_ci_b.ko \
		lib/modules/6.1.0-27-amd64/extra/kmm_ci_ab.ko lib/modules/6.1.0-27-amd64/extra/other.ko \
		lib/modules/5.14.0-70.el9.x86_64/extra/kmm_ci_a.ko 'lib/modules/odd*name.ko'; do
		mkdir -p "$(dirname "$work/opt/opt/$f")"
		head -c 4096 /dev/urandom >"$work/opt/opt/$f"
	done
}
m=$work/opt/opt/lib/modules

# 1-3: the upstream-style pattern signs exactly its matches.
reset_tree
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" \
	"$m/*/extra/kmm_ci_?.ko" >"$work/out" 2>&1
ok "a pattern over kernels signs every match (exit 0)" $? "$work/out"
"$kmm_sign" verify --cert "$work/cert.pem" "$m/6.1.0-27-amd64/extra/kmm_ci_a.ko" \
	"$m/6.1.0-27-amd64/extra/kmm_ci_b.ko" "$m/5.14.0-70.el9.x86_64/extra/kmm_ci_a.ko" \
	>"$work/verify" 2>&1
ok "the three matches verify with the certificate" $? "$work/verify"
s=0
for f in "$m/6.1.0-27-amd64/extra/kmm_ci_ab.ko" "$m/6.1.0-27-amd64/extra/other.ko" "$m/odd*name.ko"; do
	signed "$f" && { echo "$f was signed" >>"$work/diag"; s=1; }
done
ok "files the pattern does not match are left as they were" $s "$work/diag"

# 4: a pattern matching nothing is skipped, with a note; the others still run.
reset_tree
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" "$m/*/extra/nothing_*.ko" \
	"$m/6.1.0-27-amd64/extra/kmm_ci_[b-z].ko" >"$work/out" 2>&1
s=$?
grep -q 'no file matches the pattern.*nothing_\*\.ko' "$work/out" || s=1
signed "$m/6.1.0-27-amd64/extra/kmm_ci_b.ko" || s=1
signed "$m/6.1.0-27-amd64/extra/kmm_ci_a.ko" && s=1
ok "an unmatched pattern is skipped with a note, a class pattern signs its match" $s "$work/out"

# 5: a literal path that does not exist stays an error.
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" "$m/missing.ko" >"$work/out" 2>&1
[ $? = 1 ] && grep -q 'missing.ko' "$work/out"
ok "a missing literal path fails (exit 1)" $? "$work/out"

# 6-7: --no-glob takes the argument as a name.
reset_tree
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" --no-glob "$m/odd*name.ko" \
	>"$work/out" 2>&1 && signed "$m/odd*name.ko"
ok "--no-glob signs a file whose name contains '*'" $? "$work/out"
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" --no-glob "$m/*/extra/kmm_ci_?.ko" \
	>"$work/out" 2>&1
s=$?
[ $s = 1 ] && ! signed "$m/6.1.0-27-amd64/extra/kmm_ci_a.ko"
ok "--no-glob does not expand a pattern (exit 1, nothing signed)" $? "$work/out"

# 8: -o needs the pattern to name exactly one file.
"$kmm_sign" sign --key "$work/key.pem" --cert "$work/cert.pem" -o "$work/one.ko" \
	"$m/*/extra/kmm_ci_a.ko" >"$work/out" 2>&1
[ $? = 2 ] && [ ! -e "$work/one.ko" ]
ok "-o with a pattern matching two files is a usage error" $? "$work/out"

exit $failed
