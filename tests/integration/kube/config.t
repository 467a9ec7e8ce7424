#!/usr/bin/env bash
# kubeconfig forms against the real apiserver: embedded CA/cert/key data,
# --context over a broken current-context, insecure-skip-tls-verify, a wrong
# CA, tokenFile with a service-account token, an exec plugin returning a
# client certificate, an exec plugin returning a token, and errors naming the
# file and key.
set -u
. "$(dirname "$0")/lib.sh"
need_itest
need_cluster
: "${KMM_TESTENV_DIR:?KMM_TESTENV_DIR unset}"
pki=$KMM_TESTENV_DIR/pki
server=$(sed -n 's/^ *server: //p' "$KUBECONFIG" | head -1)
kc="$KMM_TESTENV_BIN/kubectl --kubeconfig $KUBECONFIG"
w=$(mktemp -d)
ns=kube-config-$$
trap '$kc delete namespace $ns --wait=false >/dev/null 2>&1; rm -rf "$w"' EXIT
b64() { base64 -w0 "$1"; }
n=0
run() { # run FILE EXPECT [CONTEXT]
	local out
	out=$("$itest" whoami "$1" "$2" "${3:-}" | sed -n 's/^\(not \)\{0,1\}ok 1 - /&/p')
	n=$((n + 1))
	echo "${out/ok 1 - /ok $n - }"
}

cat >"$w/data.yaml" <<Y
apiVersion: v1
kind: Config
current-context: broken
contexts:
- name: broken
  context: {cluster: nowhere, user: admin}
- name: good
  context: {cluster: real, user: admin, namespace: kube-system}
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:1", certificate-authority-data: $(b64 "$pki/ca.crt")}
- name: real
  cluster: {server: "$server", certificate-authority-data: $(b64 "$pki/ca.crt")}
users:
- name: admin
  user: {client-certificate-data: $(b64 "$pki/admin.crt"), client-key-data: $(b64 "$pki/admin.key")}
Y
run "$w/data.yaml" ok good
run "$w/data.yaml" "Couldn't connect"

cat >"$w/insecure.yaml" <<Y
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "$server", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {client-certificate: $pki/admin.crt, client-key: $pki/admin.key}}]
Y
run "$w/insecure.yaml" ok

sed 's|insecure-skip-tls-verify: true|certificate-authority: '"$pki"'/admin.crt|' "$w/insecure.yaml" >"$w/wrongca.yaml"
run "$w/wrongca.yaml" "SSL"

$kc create namespace "$ns" >/dev/null
$kc -n "$ns" create serviceaccount kmm-test >/dev/null
$kc -n "$ns" create token kmm-test >"$w/sa-token"
cat >"$w/token.yaml" <<Y
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "$server", certificate-authority: $pki/ca.crt}}]
users: [{name: u, user: {tokenFile: sa-token}}]
Y
run "$w/token.yaml" ok

cat >"$w/plugin-cert" <<P
#!/bin/sh
python3 - <<'PY'
import json
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
  "status": {"clientCertificateData": open("$pki/admin.crt").read(),
             "clientKeyData": open("$pki/admin.key").read()}}))
PY
P
cat >"$w/plugin-token" <<P
#!/bin/sh
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "\$(cat $w/sa-token)"
P
chmod +x "$w/plugin-cert" "$w/plugin-token"
for p in cert token; do
	cat >"$w/exec-$p.yaml" <<Y
apiVersion: v1
kind: Config
current-context: c
contexts: [{name: c, context: {cluster: k, user: u}}]
clusters: [{name: k, cluster: {server: "$server", certificate-authority: $pki/ca.crt}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./plugin-$p}}}]
Y
	run "$w/exec-$p.yaml" ok
done

printf 'apiVersion: v1\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: ftp://x}}]\n' >"$w/bad.yaml"
run "$w/bad.yaml" "bad.yaml: clusters[0].cluster.server: \"ftp://x\" is not an http(s) URL"
run "$w/data.yaml" "contexts: no entry named \"missing\"" missing
echo "1..$n"
