#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# kmm-operator with KMM_MANAGED=1 (a spoke, docs/hub-spoke.md) against a real
# kube-apiserver with OCM's ClusterClaim CRD and kwok nodes: the ClusterClaim
# kernel-versions.kmm.node.kubernetes.io holds the nodes' kernels, sorted,
# unique, joined by "\n", and follows nodes added, upgraded and removed; no
# build, sign or preflight controller runs; a bad KMM_MANAGED stops it.
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hublib  # noqa: E402
from hublib import CLAIM, KERNEL_CLAIM  # noqa: E402
import oplib  # noqa: E402
from oplib import kj, kubectl, wait  # noqa: E402

t = oplib.Tap()
NS = "kmm-spoke-op"
NODES = ["spoke-n1", "spoke-n2", "spoke-n3"]


def claim_value():
    c = kj("get", CLAIM, KERNEL_CLAIM, "--ignore-not-found")
    return ((c or {}).get("spec") or {}).get("value")


def expected():
    """What the claim must say: every node's kernel (other suites' nodes too)."""
    nodes = kj("get", "nodes")["items"]
    return "\n".join(sorted({n["status"]["nodeInfo"]["kernelVersion"] for n in nodes
                             if n["status"].get("nodeInfo", {}).get("kernelVersion")}))


def main():
    hublib.install_crds()
    kubectl("create", "ns", NS, check=False)
    kubectl("delete", CLAIM, KERNEL_CLAIM, "--ignore-not-found", check=False)
    oplib.run(oplib.TESTENV, "nodes", "remove", *NODES, check=False, timeout=300)  # a crash's
    oplib.testenv("nodes", "add", NODES[0], "--kernel", "6.8.0-31-generic")
    oplib.testenv("nodes", "add", NODES[1], "--kernel", "6.1.0-11-amd64")
    oplib.testenv("nodes", "add", NODES[2], "--kernel", "6.8.0-31-generic")

    bad = subprocess.run([oplib.OPERATOR, "--config-file", "/dev/null"],
                         env=dict(os.environ, OPERATOR_NAMESPACE=NS, KMM_MANAGED="yes",
                                  RELATED_IMAGE_WORKER="w:1"),
                         capture_output=True, text=True, timeout=60)
    t.ok(bad.returncode != 0 and "KMM_MANAGED" in bad.stdout + bad.stderr,
         "KMM_MANAGED=yes is refused, naming the variable", bad.stdout + bad.stderr)

    # The spoke runs with the install's RBAC only (deploy/rbac's role and deploy/spoke's).
    sa = hublib.ServiceAccount(NS, "spoke", [
        os.path.join(oplib.SRC, "deploy", "rbac", "role.yaml"),
        os.path.join(oplib.SRC, "deploy", "spoke", "rbac.yaml")])
    op = hublib.Operator("spoke", NS, extra_env={"KMM_MANAGED": "1",
                                                 "KUBECONFIG": sa.kubeconfig})
    op.start()
    try:
        cases(op)
    finally:
        st = op.stop()
        t.ok(st == 0, "the spoke stops cleanly on SIGTERM", f"exit {st}\n{op.logtext()[-3000:]}")
        t.ok("forbidden" not in op.logtext().lower(),
             "the install's RBAC (deploy/rbac, deploy/spoke) allowed every request",
             "\n".join(x for x in op.logtext().splitlines() if "orbidden" in x)[:3000])
        sa.remove()
        oplib.run(oplib.TESTENV, "nodes", "remove", *NODES, check=False, timeout=300)
        kubectl("delete", CLAIM, KERNEL_CLAIM, "--ignore-not-found", check=False)
        kubectl("delete", "ns", NS, "--wait=false", "--ignore-not-found", check=False)
        hublib.remove_hub_crd()


def cases(op):
    t.ok(wait(lambda: "mode=spoke" in op.logtext(), 60), "KMM_MANAGED=1 runs the operator as a spoke",
         op.logtext()[-2000:])
    v = wait(lambda: claim_value() == expected() and claim_value(), 60)
    t.ok(v and "6.1.0-11-amd64\n6.8.0-31-generic" in v,
         "the ClusterClaim holds the nodes' kernels, sorted, unique, joined by newlines",
         f"claim {claim_value()!r}, nodes {expected()!r}")
    c = kj("get", CLAIM, KERNEL_CLAIM)
    t.ok(c["apiVersion"] == "cluster.open-cluster-management.io/v1alpha1"
         and "namespace" not in c["metadata"], "a cluster-scoped v1alpha1 ClusterClaim")

    oplib.testenv("nodes", "upgrade", NODES[1], "--kernel", "6.12.0-1-amd64", "--down-for", "1")
    t.ok(wait(lambda: claim_value() == expected() and "6.12.0-1-amd64" in claim_value()
              and "6.1.0-11-amd64" not in claim_value(), 60),
         "a node's kernel upgrade changes the claim", f"{claim_value()!r} vs {expected()!r}")

    oplib.testenv("nodes", "remove", NODES[0])
    t.ok(wait(lambda: claim_value() == expected(), 60) and "6.8.0-31-generic" in claim_value(),
         "a node removed whose kernel another node runs: the kernel stays", claim_value())
    oplib.testenv("nodes", "remove", NODES[2])
    t.ok(wait(lambda: claim_value() == expected() and "6.8.0-31-generic" not in claim_value(),
              60), "the last node of a kernel removed: the kernel goes", claim_value())

    kubectl("patch", CLAIM, KERNEL_CLAIM, "--type=merge", "-p", '{"spec":{"value":"edited"}}')
    oplib.testenv("nodes", "add", NODES[0], "--kernel", "6.6.0-2-arm64")
    t.ok(wait(lambda: claim_value() == expected() and "6.6.0-2-arm64" in claim_value(), 60),
         "a node added (and an edited claim put back)", claim_value())

    status, body = op.get("/metrics")
    ctls = {line.split('controller="')[1].split('"')[0] for line in body.splitlines()
            if line.startswith("controller_runtime_reconcile_total{")}
    t.ok(status == 200 and "clusterclaim" in ctls
         and "modulebuildsignconfig" not in ctls and "preflightvalidation" not in ctls,
         "no build/sign (MBSC) or preflight controller on a spoke", sorted(ctls))


if __name__ == "__main__":
    hublib.run_main(t, main)
