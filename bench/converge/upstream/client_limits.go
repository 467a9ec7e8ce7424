// SPDX-License-Identifier: Apache-2.0

// Test infrastructure for bench/converge, not part of kmm: added to upstream's
// cmd/manager package at build time (go build -overlay) to make the bench's
// "client limits lifted" variant of upstream's manager. Upstream has no flag
// or config key for its client's rate limit: its QPS 20 / burst 30 are
// controller-runtime's defaults, applied by GetConfigOrDie when the
// kubeconfig sets none. This swaps that function (a package variable of
// controller-runtime) for one that returns the same config with client-side
// rate limiting off (a negative QPS: client-go then builds no limiter), before
// main() runs.
package main

import (
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

func init() {
	ctrl.GetConfigOrDie = func() *rest.Config {
		c := config.GetConfigOrDie()
		c.QPS = -1
		return c
	}
}
