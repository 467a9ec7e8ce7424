# shellcheck shell=bash
# Two OCI registries (Debian's docker-registry, distribution 2.8) on loopback:
# plain HTTP, and TLS + htpasswd basic auth. `testenv image push` feeds them.

te_registry_bin() {
	command -v docker-registry 2>/dev/null || te_die "docker-registry not found; run scripts/install-deps (Debian package docker-registry)"
}

te_registry_config() { # NAME PORT [tls]
	local d="$TE_DIR/registry/$1"
	mkdir -p "$d/data"
	{
		cat <<C
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$2
  secret: $(openssl rand -hex 16)
C
		if [ "${3:-}" = tls ]; then
			cat <<C
  tls:
    certificate: $TE_DIR/pki/registry.crt
    key: $TE_DIR/pki/registry.key
auth:
  htpasswd:
    realm: kmm-testenv
    path: $TE_DIR/registry/htpasswd
C
		fi
	} >"$d/config.yml"
}

te_registries_start() {
	local bin user=kmm pass
	bin=$(te_registry_bin)
	command -v htpasswd >/dev/null || te_die "htpasswd not found; run scripts/install-deps (Debian package apache2-utils)"
	pass=$(openssl rand -hex 12)
	echo "$user" >"$TE_DIR/registry/user"
	echo "$pass" >"$TE_DIR/registry/password"
	htpasswd -Bbn "$user" "$pass" >"$TE_DIR/registry/htpasswd" 2>/dev/null
	mkdir -p "$TE_DIR/registry/certs.d"
	cp "$TE_DIR/pki/ca.crt" "$TE_DIR/registry/certs.d/ca.crt"
	printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$(te_port registry-tls)" \
		"$(printf '%s:%s' "$user" "$pass" | base64 -w0)" >"$TE_DIR/registry/auth.json"
	te_registry_config http "$(te_port registry)"
	te_registry_config tls "$(te_port registry-tls)" tls
	te_start registry "$bin" serve "$TE_DIR/registry/http/config.yml"
	te_start registry-tls "$bin" serve "$TE_DIR/registry/tls/config.yml"
}

te_registry_tls_probe() {
	curl -fsS --max-time 2 --cacert "$TE_DIR/pki/ca.crt" -u "$(cat "$TE_DIR/registry/user"):$(cat "$TE_DIR/registry/password")" \
		"https://127.0.0.1:$(te_port registry-tls)/v2/"
}

te_image_usage() {
	cat <<U
usage: testenv image push DIR REF [--arch ARCH] [--format oci|v2s2] [--mtime DATE]
  Turns the directory tree DIR into a one-layer OCI image (root of the image
  = DIR; uid/gid 0; deterministic tar) and pushes it to REF.
  REF: NAME:TAG (goes to the plain-HTTP registry), or HOST:PORT/NAME:TAG;
  the TLS registry's credentials and CA are used when HOST:PORT is it.
  Prints the manifest digest (sha256:...) on stdout.
U
}

te_image() {
	local sub=${1:-}
	[ $# -gt 0 ] && shift
	case $sub in
	push) te_image_push "$@" ;;
	*) te_image_usage >&2; exit 2 ;;
	esac
}

te_image_push() {
	local dir="" ref="" arch=amd64 format=oci mtime=2020-01-01
	while [ $# -gt 0 ]; do
		case $1 in
		--arch) arch=$2; shift 2 ;;
		--format) format=$2; shift 2 ;;
		--mtime) mtime=$2; shift 2 ;;
		-h|--help) te_image_usage; return 0 ;;
		-*) te_die "image push: unknown option $1" ;;
		*) if [ -z "$dir" ]; then dir=$1; elif [ -z "$ref" ]; then ref=$1; else te_die "image push: too many arguments"; fi; shift ;;
		esac
	done
	[ -n "$dir" ] && [ -n "$ref" ] || { te_image_usage >&2; exit 2; }
	[ -d "$dir" ] || te_die "image push: $dir is not a directory"
	[ -f "$TE_DIR/ports" ] || te_die "image push: no testenv in $TE_DIR; run '$TE_SRC/testenv up' first"
	command -v skopeo >/dev/null || te_die "skopeo not found; run scripts/install-deps (Debian package skopeo)"
	local plain tls host
	plain="127.0.0.1:$(te_port registry)"
	tls="127.0.0.1:$(te_port registry-tls)"
	case $ref in
	*/*) host=${ref%%/*} ;;
	*) host= ;;
	esac
	case $host in
	*:* | *.* | localhost) ;;
	*) ref="$plain/$ref"; host=$plain ;;
	esac
	case ${ref##*/} in *:* | *@*) ;; *) ref="$ref:latest" ;; esac

	local w
	w=$(mktemp -d "${TMPDIR:-/tmp}/kmm-testenv-image.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$w'" RETURN
	mkdir -p "$w/oci/blobs/sha256"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" --format=posix \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$dir" -cf "$w/layer.tar" . || te_die "image push: tar of $dir failed"
	gzip -n -c "$w/layer.tar" >"$w/layer.tar.gz"
	local diff ldig lsz cdig csz mdig msz
	diff=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
	ldig=$(sha256sum "$w/layer.tar.gz" | cut -d' ' -f1)
	lsz=$(stat -c %s "$w/layer.tar.gz")
	mv "$w/layer.tar.gz" "$w/oci/blobs/sha256/$ldig"
	printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$arch" "$diff" >"$w/config.json"
	cdig=$(sha256sum "$w/config.json" | cut -d' ' -f1)
	csz=$(stat -c %s "$w/config.json")
	cp "$w/config.json" "$w/oci/blobs/sha256/$cdig"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
		"$cdig" "$csz" "$ldig" "$lsz" >"$w/manifest.json"
	mdig=$(sha256sum "$w/manifest.json" | cut -d' ' -f1)
	msz=$(stat -c %s "$w/manifest.json")
	cp "$w/manifest.json" "$w/oci/blobs/sha256/$mdig"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$w/oci/oci-layout"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"img"}}]}' \
		"$mdig" "$msz" >"$w/oci/index.json"

	local args=(--insecure-policy copy -q --retry-times 2 --digestfile "$w/digest")
	if [ "$host" = "$tls" ]; then
		args+=(--dest-cert-dir "$TE_DIR/registry/certs.d"
			--dest-creds "$(cat "$TE_DIR/registry/user"):$(cat "$TE_DIR/registry/password")")
	else
		args+=(--dest-tls-verify=false)
	fi
	[ "$format" = v2s2 ] && args+=(--format v2s2)
	skopeo "${args[@]}" "oci:$w/oci:img" "docker://$ref" >"$w/skopeo.log" 2>&1 ||
		te_die "image push: skopeo copy to $ref failed: $(tr '\n' ' ' <"$w/skopeo.log")"
	cat "$w/digest"
	echo
}
