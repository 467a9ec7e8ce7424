#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Open Cluster Management as test infrastructure (tests/env/ocm): a hub and
# two spoke control planes, three testenv instances this suite starts and
# stops itself, with OCM's registration controller on the hub and its
# registration and work agents on each spoke, all built from Go modules.
# Both spokes join; a ClusterClaim on spoke1 reaches the hub's ManagedCluster
# status; a ManifestWork in namespace spoke1 lands on spoke1 only, its status
# feedback (a JSONPath) comes back to the hub and follows a change; deleting
# the ManifestWork removes what it applied. Prints TAP.
#
# KMM_OCM_TESTENV_PREFIX=/tmp/kmm-testenv-ocm runs in PREFIX-hub, PREFIX-s1,
# PREFIX-s2 (default: three directories under a new temporary one).
set -uo pipefail

SRC=${KMM_SOURCE_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)}
TE=$SRC/tests/env/testenv
OCM=$SRC/tests/env/ocm
PLAN=14
n=0
failed=0

if [ -n "${KMM_OCM_TESTENV_PREFIX:-}" ]; then
	HUB=$KMM_OCM_TESTENV_PREFIX-hub S1=$KMM_OCM_TESTENV_PREFIX-s1 S2=$KMM_OCM_TESTENV_PREFIX-s2 TOP=
else
	TOP=$(mktemp -d "${TMPDIR:-/tmp}/kmm-ocm.XXXXXX")
	HUB=$TOP/hub S1=$TOP/s1 S2=$TOP/s2
fi
# The integration stage's shared testenv is not this suite's.
unset KMM_TESTENV_DIR KUBECONFIG

echo "1..$PLAN"
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	local l
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}
# until_ok SECONDS CMD...: retry CMD every 0.5 s.
until_ok() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.5
	done
}
# check NAME SECONDS CMD...: ok once CMD succeeds within SECONDS.
check() {
	local name=$1 t=$2 out
	shift 2
	if until_ok "$t" "$@"; then ok "$name"; else
		out=$("$@" 2>&1)
		not_ok "$name" "command: $*" "$out"
	fi
}
finish() {
	local rc=$?
	"$OCM" down "$HUB" >/dev/null 2>&1 || true
	local d
	for d in "$S2" "$S1" "$HUB"; do KMM_TESTENV_DIR=$d "$TE" down >/dev/null 2>&1 || true; done
	if [ $failed -eq 0 ] && [ $n -eq $PLAN ]; then
		rm -f "$HUB.up.log" "$S1.up.log" "$S2.up.log"
		[ -z "$TOP" ] || rm -rf "$TOP"
	else
		echo "# logs kept in $HUB/logs, $S1/logs, $S2/logs"
	fi
	exit $rc
}
trap finish EXIT
bail() {
	echo "Bail out! $*"
	exit 1
}

BIN=$("$TE" paths | sed -n 's/^bin=//p')
hub() { "$BIN/kubectl" --kubeconfig "$HUB/kubeconfig" "$@"; }
s1() { "$BIN/kubectl" --kubeconfig "$S1/kubeconfig" "$@"; }
s2() { "$BIN/kubectl" --kubeconfig "$S2/kubeconfig" "$@"; }

# 1: OCM's binaries (cached after the first build).
t0=$SECONDS
if out=$("$OCM" build 2>&1); then
	ok "OCM's registration and work built from Go modules ($((SECONDS - t0)) s)"
else
	not_ok "OCM's registration and work built from Go modules" "$out"
	bail "no OCM binaries"
fi

# 2: three control planes, started together.
t0=$SECONDS
pids=()
for d in "$HUB" "$S1" "$S2"; do
	KMM_TESTENV_DIR=$d "$TE" up >"$d.up.log" 2>&1 &
	pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
if [ $rc = 0 ]; then
	ok "hub and two spoke testenvs up ($((SECONDS - t0)) s)"
else
	not_ok "hub and two spoke testenvs up" "$(tail -n 5 "$HUB.up.log" "$S1.up.log" "$S2.up.log" 2>/dev/null)"
	bail "no control planes"
fi

# 3: OCM up: both spokes registered, accepted, joined and available.
t0=$SECONDS
if out=$("$OCM" up "$HUB" "spoke1=$S1" "spoke2=$S2" 2>&1); then
	ok "ocm up: spoke1 and spoke2 joined ($((SECONDS - t0)) s)"
	echo "$out" | sed -n 's/^ocm: \(accepted\|up in\)/# \1/p'
else
	not_ok "ocm up: spoke1 and spoke2 joined" "$out"
	bail "OCM did not come up"
fi

# 4: the hub's view of each spoke.
conds() { hub get managedcluster "$1" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}'; }
joined() {
	local c
	c=$(conds "$1")
	for t in HubAcceptedManagedCluster ManagedClusterJoined ManagedClusterConditionAvailable; do
		case " $c " in *" $t=True "*) ;; *) return 1 ;; esac
	done
}
check "ManagedClusters spoke1 and spoke2: accepted, joined, available" 30 eval 'joined spoke1 && joined spoke2'

# 5: every OCM process listens on loopback only.
ocm_listeners() {
	local d p pid out=""
	for d in "$HUB" "$S1" "$S2"; do
		for p in "$d"/pids/ocm-*.pid; do
			pid=$(cat "$p")
			out="$out$(ss -Htlnp 2>/dev/null | grep "pid=$pid," | awk '{print $4}') "
		done
	done
	echo "$out"
}
listeners=$(ocm_listeners)
if [ -n "${listeners// /}" ] && ! tr ' ' '\n' <<<"$listeners" | grep -v '^$' | grep -qv '^127\.0\.0\.1:'; then
	ok "OCM's servers listen on 127.0.0.1 only ($(wc -w <<<"$listeners") sockets)"
else
	not_ok "OCM's servers listen on 127.0.0.1 only" "listening: $listeners"
fi

# 6: a ClusterClaim on spoke1 reaches the hub; spoke2 has none of it.
claim=kernel-versions.kmm.sigs.x-k8s.io
s1 apply -f - >/dev/null <<C
apiVersion: cluster.open-cluster-management.io/v1alpha1
kind: ClusterClaim
metadata:
  name: $claim
spec:
  value: 6.1.0-18-amd64
C
claim_of() { hub get managedcluster "$1" -o jsonpath="{.status.clusterClaims[?(@.name==\"$claim\")].value}"; }
t0=$SECONDS
check "ClusterClaim $claim on spoke1 appears in ManagedCluster spoke1's status" 60 \
	eval '[ "$(claim_of spoke1)" = 6.1.0-18-amd64 ]'
echo "# claim reported in $((SECONDS - t0)) s"
if [ -z "$(claim_of spoke2)" ]; then ok "ManagedCluster spoke2 does not report spoke1's claim"; else
	not_ok "ManagedCluster spoke2 does not report spoke1's claim" "spoke2: $(claim_of spoke2)"; fi

# 7: a ManifestWork for spoke1: a ConfigMap and a custom resource whose
# status the work agent feeds back to the hub.
for k in s1 s2; do
	$k apply -f - >/dev/null <<'CRD'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: probes.ocmtest.kmm.sigs.x-k8s.io
spec:
  group: ocmtest.kmm.sigs.x-k8s.io
  names: {kind: Probe, plural: probes, singular: probe}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
CRD
	$k wait --for condition=Established --timeout 60s crd/probes.ocmtest.kmm.sigs.x-k8s.io >/dev/null
done
hub apply -f - >/dev/null <<'W'
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: ocm-probe
  namespace: spoke1
spec:
  workload:
    manifests:
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: ocm-probe, namespace: default}
      data: {from: hub}
    - apiVersion: ocmtest.kmm.sigs.x-k8s.io/v1
      kind: Probe
      metadata: {name: ocm-probe, namespace: default}
      spec: {kernel: 6.1.0-18-amd64}
  manifestConfigs:
  - resourceIdentifier:
      group: ocmtest.kmm.sigs.x-k8s.io
      resource: probes
      namespace: default
      name: ocm-probe
    feedbackRules:
    - type: JSONPaths
      jsonPaths:
      - {name: phase, path: .status.phase}
W
t0=$SECONDS
check "ManifestWork spoke1/ocm-probe: its ConfigMap and Probe on spoke1" 60 \
	eval '[ "$(s1 -n default get configmap ocm-probe -o jsonpath={.data.from})" = hub ] && s1 -n default get probe ocm-probe'
echo "# applied on spoke1 in $((SECONDS - t0)) s"
work_cond() { hub -n spoke1 get manifestwork ocm-probe -o jsonpath="{.status.conditions[?(@.type==\"$1\")].status}"; }
check "ManifestWork spoke1/ocm-probe: Applied and Available on the hub" 30 \
	eval '[ "$(work_cond Applied)" = True ] && [ "$(work_cond Available)" = True ]'
if ! s2 -n default get configmap ocm-probe >/dev/null 2>&1 && ! s2 -n default get probe ocm-probe >/dev/null 2>&1; then
	ok "spoke2 has neither the ConfigMap nor the Probe"
else
	not_ok "spoke2 has neither the ConfigMap nor the Probe" "$(s2 -n default get configmap,probe 2>&1)"
fi

# 8: status feedback: the Probe's .status.phase, set on spoke1, reaches the
# ManifestWork's status on the hub, and follows a change.
feedback() {
	hub -n spoke1 get manifestwork ocm-probe -o jsonpath='{.status.resourceStatus.manifests[?(@.resourceMeta.kind=="Probe")].statusFeedback.values[?(@.name=="phase")].fieldValue.string}'
}
s1 -n default patch probe ocm-probe --subresource status --type merge -p '{"status":{"phase":"Loaded"}}' >/dev/null
t0=$SECONDS
check "status feedback: phase=Loaded from spoke1's Probe on the hub" 60 eval '[ "$(feedback)" = Loaded ]'
echo "# feedback in $((SECONDS - t0)) s"
s1 -n default patch probe ocm-probe --subresource status --type merge -p '{"status":{"phase":"Unloaded"}}' >/dev/null
check "status feedback follows a change: phase=Unloaded" 60 eval '[ "$(feedback)" = Unloaded ]'

# 9: deleting the ManifestWork removes what it applied.
hub -n spoke1 delete manifestwork ocm-probe --wait=false >/dev/null
t0=$SECONDS
check "ManifestWork deleted: its ConfigMap and Probe are gone from spoke1" 60 \
	eval '! s1 -n default get configmap ocm-probe && ! s1 -n default get probe ocm-probe && ! hub -n spoke1 get manifestwork ocm-probe'
echo "# removed in $((SECONDS - t0)) s"

# 10: down stops every OCM process.
OCM_BIN=$("$OCM" env "$HUB" | sed -n "s/^export KMM_OCM_BIN='\(.*\)'$/\1/p")
"$OCM" down "$HUB" >/dev/null 2>&1
left=""
for p in /proc/[0-9]*; do
	c=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
	case $c in "$OCM_BIN/"*) left="$left ${p#/proc/}" ;; esac
done
if [ -n "$OCM_BIN" ] && [ -z "$left" ]; then ok "ocm down: no OCM process left"; else
	not_ok "ocm down: no OCM process left" "bin: $OCM_BIN, still running:$left"; fi
exit $((failed > 0))
