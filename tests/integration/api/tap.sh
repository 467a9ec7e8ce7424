# SPDX-License-Identifier: Apache-2.0
# Sourced by the api suites after they set T (their temporary directory): the
# TAP counters and checks. A failed check shows the first TAP_DIAG_LINES
# (default 30) lines of $T/out, where the suites keep the last command's output.
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; [ -s "$T/out" ] && sed 's/^/# /' "$T/out" | head -"${TAP_DIAG_LINES:-30}"; }
check() { name=$1; shift; if eval "$@"; then ok "$name"; else nok "$name"; fi; }
