#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kmm's install grants its ServiceAccounts what kmm uses and nothing more
# (docs/install.md, "Permissions"; docs/testenv.md, "RBAC: every rule used").
# The last suite of the node stage: tests/run runs kmm.t, deviceplugin.t and
# the other node suites first, each with a testenv whose apiserver appends
# what kmm-operator-system's ServiceAccounts ask to one audit log
# (KMM_TESTENV_AUDIT_LOG, docs/testenv.md, "Audit log"). This suite installs
# deploy/ (`kubectl apply --server-side -k`) in a testenv of its own, reads
# the Roles and ClusterRoles bound to those ServiceAccounts back from the API,
# and reports one case per rule (verb x apiGroup x resource[/subresource],
# with its resourceNames and namespace) naming the first request in the
# audit log that used it (tests/node/rbac-coverage.py). A rule no request
# used fails with its name, and with the suite expected to use it when that
# is another suite's; a request RBAC refused fails no-request-forbidden. Then `kubectl auth can-i --as` each ServiceAccount
# (with its groups) shows what it may not do.
set -uo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export KMM_SOURCE_DIR=${KMM_SOURCE_DIR:-$SRC}
NODE=$SRC/tests/node/node
TESTENV=$SRC/tests/env/testenv
NS_KMM=kmm-operator-system
NS=kmm-rbac-t
OP_SA=system:serviceaccount:$NS_KMM:kmm-operator-controller
WH_SA=system:serviceaccount:$NS_KMM:kmm-operator-webhook

SUITE_TAG=rbac
export KMM_NODE_NAME=kmm-node-r$$
# The log the suites before this one wrote; this suite's own testenv writes none.
AUDIT=${KMM_TESTENV_AUDIT_LOG:-}
unset KMM_TESTENV_AUDIT_LOG
# shellcheck source=tests/node/kmm-suite.sh
. "$SRC/tests/node/kmm-suite.sh"

# The audit log and the files the apiserver rotated it into (none is no error).
audit_files() {
	local f
	for f in "$AUDIT" "${AUDIT%.log}"-*.log; do [ ! -f "$f" ] || echo "$f"; done
}
t_audit() {
	local missing=() t
	for t in python3 jq; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
	[ ${#missing[@]} -eq 0 ] || why "missing: ${missing[*]} (scripts/install-deps installs them)" || return 1
	[ -n "$AUDIT" ] || why "KMM_TESTENV_AUDIT_LOG is not set: tests/run's node stage sets it and runs kmm.t" \
		"and the other node suites first, whose testenvs write the audit log this suite reads" || return 1
	[ -s "$AUDIT" ] || why "no audit log at $AUDIT: run kmm.t, deviceplugin.t and the other node suites first" \
		"with KMM_TESTENV_AUDIT_LOG=$AUDIT" || return 1
	local n nss
	# shellcheck disable=SC2046 # one word per file
	n=$(cat $(audit_files) | grep -c "system:serviceaccount:$NS_KMM:")
	[ "$n" -gt 0 ] || why "$AUDIT holds no request of a ServiceAccount of $NS_KMM" || return 1
	# shellcheck disable=SC2046
	nss=$(cat $(audit_files) | jq -r '.objectRef.namespace // empty' 2>/dev/null | sort -u | tr '\n' ' ')
	NOTE="$n requests in $(audit_files | wc -l) file(s); namespaces: $nss"
}

t_install_plain() {
	kubectl apply --server-side -k "$SRC/deploy" >"$WORK/install.log" 2>&1 ||
		why "kubectl apply --server-side -k deploy: $(tail -n 5 "$WORK/install.log" | tr '\n' ' ')" || return 1
	NOTE="$(grep -c serverside-applied "$WORK/install.log") objects"
}

t_rules() {
	kubectl get clusterroles,clusterrolebindings,roles,rolebindings -A -o json >"$WORK/rbac.json" 2>"$WORK/rbac.err" ||
		why "kubectl get the RBAC objects: $(cat "$WORK/rbac.err")" || return 1
	# shellcheck disable=SC2046 # one word per file
	python3 "$SRC/tests/node/rbac-coverage.py" "$NS_KMM" "$WORK/rbac.json" $(audit_files) >"$WORK/coverage.tsv" \
		2>"$WORK/coverage.err" || why "rbac-coverage.py: $(tail -n 5 "$WORK/coverage.err")" || return 1
	NOTE="$(wc -l <"$WORK/coverage.tsv") rules bound to $NS_KMM's ServiceAccounts"
}

# No request of kmm's ServiceAccounts was refused by RBAC: the rules cover
# everything kmm did (a removed rule kmm needed shows here).
t_none_forbidden() {
	# shellcheck disable=SC2046 # one word per file
	cat $(audit_files) | jq -r --arg p "system:serviceaccount:$NS_KMM:" 'select((.user.username // "") | startswith($p))
		| select(.annotations["authorization.k8s.io/decision"] == "forbid")
		| "\(.user.username) \(.verb) \(.objectRef.apiGroup // "")/\(.objectRef.resource // .requestURI)\(if .objectRef.subresource then "/" + .objectRef.subresource else "" end) \(.objectRef.namespace // "")/\(.objectRef.name // "")"' \
		2>"$WORK/forbidden.err" | sort | uniq -c >"$WORK/forbidden.txt" || why "jq: $(head -n 3 "$WORK/forbidden.err")" || return 1
	[ ! -s "$WORK/forbidden.txt" ] || why "refused: $(head -n 20 "$WORK/forbidden.txt")"
}

# One case per rule, from rbac-coverage.py's lines.
rule_cases() {
	local status name note
	while IFS=$'\t' read -r status name note; do
		if [ -n "$BROKEN" ]; then
			fail "rule $name" "not run: '$BROKEN' failed"
		elif [ "$status" = ok ]; then
			pass "rule $name" "$note"
		elif [ "$status" = todo ]; then
			N=$((N + 1))
			echo "not ok $N - rule $name # TODO $note"
		else
			fail "rule $name" "$note"
		fi
	done <"$WORK/coverage.tsv"
}

# can_i VERB RESOURCE[:SUBRESOURCE] AS [NS|-A]: kubectl auth can-i's answer (yes/no), as the
# ServiceAccount with the groups its token carries (bindings to them count too).
can_i() {
	local r=$2 sub=() scope=()
	case $r in *:*) sub=(--subresource "${r#*:}") r=${r%%:*} ;; esac
	case ${4:-} in -A) scope=(-A) ;; ?*) scope=(-n "$4") ;; esac
	kubectl auth can-i "$1" "$r" --as "$3" --as-group system:serviceaccounts \
		--as-group "system:serviceaccounts:$NS_KMM" --as-group system:authenticated \
		"${scope[@]}" "${sub[@]}" 2>/dev/null
}
# answers WANT CHECK...: each CHECK ("VERB RESOURCE AS [NS]") answered WANT.
answers() {
	local want=$1 c got bad=()
	shift
	for c in "$@"; do
		# shellcheck disable=SC2086 # the check's words
		got=$(can_i $c)
		[ "$got" = "$want" ] || bad+=("'$c': $got, wanted $want")
	done
	[ ${#bad[@]} -eq 0 ] || why "${bad[@]}"
}

# What each uses, asked first, so that a "no" below is a denial, not a broken check.
t_can() {
	answers yes "create pods $OP_SA $NS" "patch nodes $OP_SA" "create leases $OP_SA $NS_KMM" \
		"get secrets $OP_SA $NS" "update secrets/kmm-operator-webhook-server-cert $WH_SA $NS_KMM" \
		"patch customresourcedefinitions/preflightvalidations.kmm.sigs.x-k8s.io $WH_SA"
}

t_operator_may_not() {
	answers no "create secrets $OP_SA -A" "update secrets $OP_SA -A" "delete secrets $OP_SA -A" \
		"list secrets $OP_SA -A" "watch secrets $OP_SA -A" "create configmaps $OP_SA $NS_KMM" \
		"update configmaps $OP_SA $NS_KMM" "list configmaps $OP_SA -A" \
		"create nodes $OP_SA" "delete nodes $OP_SA" "update nodes $OP_SA" "patch nodes:status $OP_SA" \
		"create pods:exec $OP_SA $NS" "create pods:attach $OP_SA $NS" "create pods:portforward $OP_SA $NS" \
		"create pods:eviction $OP_SA $NS" "patch pods:ephemeralcontainers $OP_SA $NS" \
		"create serviceaccounts:token $OP_SA $NS" "get serviceaccounts $OP_SA $NS" \
		"create leases $OP_SA kube-system" "update leases $OP_SA kube-node-lease" "get leases $OP_SA default" \
		"delete leases $OP_SA $NS_KMM" \
		"escalate clusterroles $OP_SA" "bind clusterroles $OP_SA" "create clusterrolebindings $OP_SA" \
		"create rolebindings $OP_SA $NS_KMM" "impersonate users $OP_SA" "impersonate serviceaccounts $OP_SA" \
		"create customresourcedefinitions $OP_SA" "patch validatingwebhookconfigurations $OP_SA" \
		"create mutatingwebhookconfigurations $OP_SA" "create certificatesigningrequests $OP_SA" \
		"create deployments $OP_SA $NS" "create namespaces $OP_SA" "delete namespaces $OP_SA" \
		"create modules.kmm.sigs.x-k8s.io $OP_SA $NS" "delete modules.kmm.sigs.x-k8s.io $OP_SA $NS" \
		"create events.events.k8s.io $OP_SA $NS" "patch events $OP_SA $NS"
}

t_webhook_may_not() {
	answers no "create secrets $WH_SA default" "get secrets $WH_SA -A" "get secrets/other $WH_SA $NS_KMM" \
		"list secrets $WH_SA $NS_KMM" "watch secrets $WH_SA $NS_KMM" \
		"delete secrets/kmm-operator-webhook-server-cert $WH_SA $NS_KMM" \
		"patch secrets/kmm-operator-webhook-server-cert $WH_SA $NS_KMM" \
		"patch validatingwebhookconfigurations/other $WH_SA" \
		"delete validatingwebhookconfigurations/kmm-operator-validating-webhook-configuration $WH_SA" \
		"create validatingwebhookconfigurations $WH_SA" "list validatingwebhookconfigurations $WH_SA" \
		"create mutatingwebhookconfigurations $WH_SA" \
		"update customresourcedefinitions/preflightvalidations.kmm.sigs.x-k8s.io $WH_SA" \
		"delete customresourcedefinitions/preflightvalidations.kmm.sigs.x-k8s.io $WH_SA" \
		"patch customresourcedefinitions/modules.kmm.sigs.x-k8s.io $WH_SA" \
		"create pods $WH_SA $NS_KMM" "get modules.kmm.sigs.x-k8s.io $WH_SA $NS" "patch nodes $WH_SA" \
		"create leases $WH_SA $NS_KMM" "create events $WH_SA $NS_KMM" "get configmaps $WH_SA $NS_KMM" \
		"create serviceaccounts:token $WH_SA $NS_KMM" "escalate clusterroles $WH_SA" \
		"create tokenreviews $WH_SA" "impersonate users $WH_SA"
}

t_down_testenv() {
	"$TESTENV" down >"$WORK/down.log" 2>&1 || why "testenv down: $(tail -n 2 "$WORK/down.log" | tr '\n' ' ')"
}

step audit-log t_audit
step testenv-up t_testenv_up
step install t_install_plain
step rules-read t_rules
check no-request-forbidden t_none_forbidden
if [ -s "$WORK/coverage.tsv" ]; then rule_cases; else check rule-cases false; fi
step can-i-uses t_can
check operator-may-not t_operator_may_not
check webhook-may-not t_webhook_may_not
BROKEN=
check down t_down_testenv
echo "1..$N"
echo "# wall time $(secs "$STARTED") s"
