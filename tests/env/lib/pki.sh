# shellcheck shell=bash
# Certificates and keys for one run, made with openssl (EC P-256: fast).

# te_pki_key FILE
te_pki_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# te_pki_cert NAME SUBJECT EXT   (EXT: openssl x509v3 extension lines)
# Writes $pki/NAME.key and $pki/NAME.crt signed by the run's CA.
te_pki_cert() {
	local pki="$TE_DIR/pki" name=$1 subj=$2 ext=$3
	te_pki_key "$pki/$name.key"
	openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
	printf '%s\n' "$ext" >"$pki/$name.ext"
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
		-CAcreateserial -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
	rm -f "$pki/$name.csr" "$pki/$name.ext"
}

te_pki_client() {
	te_pki_cert "$1" "$2" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
}

te_pki_make() {
	local pki="$TE_DIR/pki"
	mkdir -p "$pki"
	chmod 700 "$pki"
	te_pki_key "$pki/ca.key"
	openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=kmm-testenv-ca" -days 30 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$pki/ca.crt" 2>/dev/null
	te_pki_cert apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	te_pki_cert registry "/CN=kmm-testenv-registry" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
	te_pki_client admin "/O=system:masters/CN=kmm-testenv-admin"
	te_pki_client user "/O=kmm-testenv-users/CN=kmm-testenv-user"
	te_pki_client controller-manager "/CN=system:kube-controller-manager"
	te_pki_client scheduler "/CN=system:kube-scheduler"
	te_pki_client kwok "/O=system:masters/CN=kmm-testenv-kwok"
	te_pki_client apiserver-kubelet-client "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client"
	# Service-account token signing key pair.
	te_pki_key "$pki/sa.key"
	openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
	rm -f "$pki/ca.srl"
	local f
	for f in ca apiserver registry admin user controller-manager scheduler kwok; do
		[ -s "$pki/$f.crt" ] && [ -s "$pki/$f.key" ] || return 1
	done
	[ -s "$pki/sa.pub" ]
}

# te_kubeconfig FILE USER(cert name) SERVER
te_kubeconfig() {
	local file=$1 who=$2 server=$3 pki="$TE_DIR/pki"
	cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kmm-testenv
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $who
  user:
    client-certificate: $pki/$who.crt
    client-key: $pki/$who.key
contexts:
- name: $who@kmm-testenv
  context:
    cluster: kmm-testenv
    user: $who
    namespace: default
current-context: $who@kmm-testenv
KC
	chmod 600 "$file"
}
