# shellcheck shell=bash
# Shared helpers for tests/env/testenv. Sourced; TE_SRC is tests/env.

# shellcheck source=../versions
. "$TE_SRC/versions"

# Go packages built by `testenv build`, in one `go build` invocation.
TE_GO_PACKAGES="k8s.io/kubernetes/cmd/kube-apiserver
k8s.io/kubernetes/cmd/kube-controller-manager
k8s.io/kubernetes/cmd/kube-scheduler
k8s.io/kubernetes/cmd/kubectl
k8s.io/kubernetes/cmd/kubelet
sigs.k8s.io/kwok/cmd/kwok
./etcd"
TE_BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok etcd"

TE_CACHE_ROOT=${KMM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmm}
TE_GO_ROOT_CACHE="$TE_CACHE_ROOT/go"
TE_BIN_DIR="$TE_CACHE_ROOT/testenv/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
TE_DIR=${KMM_TESTENV_DIR:-/tmp/kmm-testenv-$(id -u)}

te_info() { printf 'testenv: %s\n' "$*" >&2; }
te_die() {
	printf 'testenv: error: %s\n' "$*" >&2
	exit 1
}

te_go_min() { echo 1.26.0; }

te_gobin() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [ -x /usr/local/go/bin/go ]; then
		echo /usr/local/go/bin/go
	else
		return 1
	fi
}

# Run the go command with caches outside the repository.
te_go() {
	local go
	go=$(te_gobin) || te_die "no Go toolchain found (need go >= $(te_go_min) on PATH or /usr/local/go/bin/go)"
	mkdir -p "$TE_GO_ROOT_CACHE"
	env GOCACHE="$TE_GO_ROOT_CACHE/build" GOMODCACHE="$TE_GO_ROOT_CACHE/mod" \
		GOPATH="$TE_GO_ROOT_CACHE/path" GOFLAGS="${TE_GOFLAGS:-}" \
		GOTOOLCHAIN="${GOTOOLCHAIN_PIN:-local}" CGO_ENABLED=0 GOWORK=off \
		"$go" "$@"
}
