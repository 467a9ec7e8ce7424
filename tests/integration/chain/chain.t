#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The build-and-sign chain (tests/chain/chain.t) in tests/run's integration
# stage, where it pushes to the shared testenv's plain-HTTP registry
# ($KMM_TESTENV_REGISTRY).
top=${KMM_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
exec "$top/tests/chain/chain.t" "$@"
