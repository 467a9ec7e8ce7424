# shellcheck shell=bash
# testenv build: compile the control-plane binaries once per machine into
# $TE_BIN_DIR (outside the repository), keyed by the pinned versions.
# Quiet when the cache is already good; progress and a log path otherwise.

# ./versions without helm's and OCM's blocks (each pin builds its own tool
# alone: te_build_helm, tests/env/ocm).
te_versions_control_plane() {
	sed -e '/^# Helm: /,/^HELM_VERSION=/d' -e '/^# Open Cluster Management: /,/^OCM_VERSION=/d' \
		"$TE_SRC/versions"
}

# Hash of everything that determines the binaries.
te_build_key() {
	{
		te_versions_control_plane
		cat "$TE_SRC/tools/go.mod" "$TE_SRC/tools/go.sum" "$TE_SRC"/tools/*/*.go
		echo "$TE_GO_PACKAGES"
		te_build_ldflags
	} | sha256sum | cut -c1-16
}

# Linker flags: stripped, plus the version stamps that Kubernetes' own build
# sets (otherwise the binaries report v0.0.0-master).
te_build_ldflags() {
	local v=${KUBE_VERSION#v} ldflags="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags="$ldflags -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=${v%%.*}"
		ldflags="$ldflags -X $pkg.gitMinor=$(echo "$v" | cut -d. -f2) -X $pkg.gitTreeState=clean"
	done
	echo "$ldflags"
}

te_build_ok() {
	local b
	[ -f "$TE_BIN_DIR/.stamp" ] || return 1
	[ "$(cat "$TE_BIN_DIR/.stamp")" = "$(te_build_key)" ] || return 1
	for b in $TE_BINARIES; do [ -x "$TE_BIN_DIR/$b" ] || return 1; done
}

# go.mod must agree with ./versions (the one place versions live).
te_build_check_pins() {
	local mod="$TE_SRC/tools/go.mod" want
	for want in "k8s.io/kubernetes $KUBE_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" \
		"sigs.k8s.io/kwok $KWOK_VERSION" "k8s.io/api => k8s.io/api $KUBE_STAGING_VERSION"; do
		grep -qF "$want" "$mod" ||
			te_die "build: step 'check pins': $mod lacks '$want'; run tests/env/testenv pin after editing tests/env/versions"
	done
}

te_build() {
	local force=0
	[ "${1:-}" = "--force" ] && force=1
	if [ $force = 0 ] && te_build_ok; then
		return 0
	fi
	te_build_check_pins
	if [ -z "${GOTOOLCHAIN_PIN:-}" ]; then
		local have
		have=$(te_go env GOVERSION 2>/dev/null) || te_die "build: step 'find go': no working Go toolchain (need go >= $(te_go_min) on PATH or in /usr/local/go/bin)"
		if [ "$(printf '%s\n%s\n' "go$(te_go_min)" "$have" | sort -V | head -1)" != "go$(te_go_min)" ]; then
			te_die "build: step 'find go': $have is older than go$(te_go_min), which tools/go.mod needs; set GOTOOLCHAIN_PIN in $TE_SRC/versions to fetch one through the module proxy"
		fi
	fi
	local log_dir="$TE_CACHE_ROOT/testenv/logs" log start tmp
	mkdir -p "$log_dir"
	log="$log_dir/build-$(date +%Y%m%dT%H%M%S).log"
	start=$(date +%s)
	tmp="$TE_BIN_DIR.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	te_info "building Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION from Go modules"
	te_info "  into $TE_BIN_DIR (first time only; about 5-10 min on 2 cores); log: $log"
	te_info "step 1/2: download modules"
	if ! (cd "$TE_SRC/tools" && te_go mod download -x) >>"$log" 2>&1; then
		rm -rf "$tmp"
		te_die "build: step 'download modules' failed; see $log"
	fi
	te_info "step 2/2: go build (${TE_BINARIES// /,})"
	local ldflags
	ldflags=$(te_build_ldflags)
	# shellcheck disable=SC2086 # word splitting of the package list is wanted
	(cd "$TE_SRC/tools" && te_go build -v -trimpath -ldflags="$ldflags" -o "$tmp/" $TE_GO_PACKAGES) >>"$log" 2>&1 &
	local gopid=$! rc=0 lines0 ticks=0
	lines0=$(wc -l <"$log")
	# A line of progress a minute (go -v prints one line per compiled package).
	while kill -0 "$gopid" 2>/dev/null; do
		sleep 1
		ticks=$((ticks + 1))
		if [ $((ticks % 60)) = 0 ]; then
			te_info "  ... $((ticks / 60)) min, $(($(wc -l <"$log") - lines0)) packages compiled"
		fi
	done
	wait "$gopid" || rc=$?
	if [ $rc != 0 ]; then
		rm -rf "$tmp"
		te_die "build: step 'go build' failed; see $log (last lines: $(tail -n 3 "$log" | tr '\n' ' '))"
	fi
	local b
	for b in $TE_BINARIES; do
		[ -x "$tmp/$b" ] || { rm -rf "$tmp"; te_die "build: step 'go build' produced no $b; see $log"; }
	done
	te_build_key >"$tmp/.stamp"
	rm -rf "$TE_BIN_DIR"
	mv "$tmp" "$TE_BIN_DIR"
	te_info "built in $(($(date +%s) - start)) s: $TE_BIN_DIR"
}

# helm, built from tools/helm (a module of its own) into $TE_BIN_DIR with its
# own stamp; `testenv build` builds it after the control plane.
te_helm_key() {
	{
		echo "$HELM_VERSION"
		cat "$TE_SRC/tools/helm/go.mod" "$TE_SRC/tools/helm/go.sum"
	} | sha256sum | cut -c1-16
}

te_build_helm() {
	local mod="$TE_SRC/tools/helm" log_dir="$TE_CACHE_ROOT/testenv/logs" log start tmp
	if [ -x "$TE_BIN_DIR/helm" ] && [ "$(cat "$TE_BIN_DIR/.helm-stamp" 2>/dev/null)" = "$(te_helm_key)" ]; then
		return 0
	fi
	grep -qF "helm.sh/helm/v4 $HELM_VERSION" "$mod/go.mod" ||
		te_die "build: step 'check pins': $mod/go.mod lacks 'helm.sh/helm/v4 $HELM_VERSION'; run tests/env/testenv pin after editing tests/env/versions"
	mkdir -p "$log_dir" "$TE_BIN_DIR"
	log="$log_dir/build-helm-$(date +%Y%m%dT%H%M%S).log"
	start=$(date +%s)
	tmp="$TE_BIN_DIR/.helm.tmp.$$"
	rm -rf "$tmp"
	te_info "building helm $HELM_VERSION from Go modules into $TE_BIN_DIR (first time only; a few min); log: $log"
	if ! (cd "$mod" && te_go mod download -x && te_go build -v -trimpath \
		-ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
		-o "$tmp/" helm.sh/helm/v4/cmd/helm) >>"$log" 2>&1; then
		rm -rf "$tmp"
		te_die "build: step 'go build helm' failed; see $log (last lines: $(tail -n 3 "$log" | tr '\n' ' '))"
	fi
	mv "$tmp/helm" "$TE_BIN_DIR/helm"
	rm -rf "$tmp"
	te_helm_key >"$TE_BIN_DIR/.helm-stamp"
	te_info "built helm in $(($(date +%s) - start)) s"
}
