#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# kmm-operator --hub against a real kube-apiserver with OCM's own CRDs
# (docs/hub-spoke.md): ManagedClusters made by hand (labels, the kernel
# claim in status, as OCM's registration leaves them), a
# ManagedClusterModule, the MIC per cluster, and the ManifestWork carrying
# the spoke's Module with one literal mapping per kernel, each image pinned
# to the digest the registry holds; selection by labels and claims followed
# both ways; status counters from the ManifestWorks' conditions.
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hublib  # noqa: E402
from hublib import MCM, MIC, MW, MC, MCM_LABEL  # noqa: E402
import oplib  # noqa: E402
from oplib import kj, kubectl, wait  # noqa: E402

t = oplib.Tap()
NS = "kmm-hub-op"
SPOKE_NS = "kmm-spoke"
NAME = "hubkmod"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
K1, K2, K3 = "6.1.0-11-amd64", "6.8.0-31-generic", "5.15.0-9-generic"
ALL_CLUSTERS = ["hub-spoke-a", "hub-spoke-b"]
# The repository the hub "builds" into: new in every run, as the registry outlives it.
BUILT = f"hub/built-{os.getpid()}"


def push(kernel, repo="hub/kmod"):
    """A kmod image for kernel; returns its digest as the registry has it."""
    with tempfile.TemporaryDirectory() as d:
        kd = os.path.join(d, "opt", "lib", "modules", kernel)
        os.makedirs(kd)
        with open(os.path.join(kd, "hubkmod.ko"), "w") as f:
            f.write(f"not really a module for {kernel}\n")
        out = oplib.testenv("image", "push", d, f"{repo}:{kernel}")
    digest = [w for w in out.split() if w.startswith("sha256:")]
    return digest[-1] if digest else None


def mcm_obj(selector):
    return {"apiVersion": "hub.kmm.sigs.x-k8s.io/v1beta1", "kind": "ManagedClusterModule",
            "metadata": {"name": NAME},
            "spec": {"spokeNamespace": SPOKE_NS, "selector": selector,
                     "moduleSpec": {"selector": {"kubernetes.io/os": "linux"},
                                    "moduleLoader": {"container": {
                                        "modprobe": {"moduleName": "hubkmod"},
                                        "registryTLS": {"insecure": True},
                                        "inTreeModulesToRemove": ["oldkmod"],
                                        "kernelMappings": [{
                                            "regexp": "^.+$",
                                            "containerImage":
                                                REG + "/hub/kmod:${KERNEL_FULL_VERSION}"}]}}}}}


def ready():
    for c in (kj("get", MCM, NAME).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status"), c.get("reason")
    return None


def literals(work):
    ms = (((work or {}).get("spec") or {}).get("workload") or {}).get("manifests") or []
    if len(ms) != 1:
        return None
    c = ms[0]["spec"]["moduleLoader"]["container"]
    return {m.get("literal"): m for m in c.get("kernelMappings", [])}


def main():
    hublib.install_crds()
    for ns in [NS] + ALL_CLUSTERS:
        kubectl("create", "ns", ns, check=False)
    digests = {k: push(k) for k in (K1, K2, K3)}
    t.ok(all(digests.values()), "kmod images pushed, digests known", digests)
    hublib.managed_cluster("hub-spoke-a", {"fleet": "a"}, [K2, K1, K1 + "+"])
    hublib.managed_cluster("hub-spoke-b", {"fleet": "b"}, [K1])
    # The hub runs with the install's RBAC only (deploy/rbac's role and deploy/hub's).
    sa = hublib.ServiceAccount(NS, "hub", [os.path.join(oplib.SRC, "deploy", "rbac", "role.yaml"),
                                           os.path.join(oplib.SRC, "deploy", "hub", "rbac.yaml")])
    op = hublib.Operator("hub", NS, args=["--hub"],
                         extra_env={"RELATED_IMAGE_WORKER": "", "KUBECONFIG": sa.kubeconfig,
                                    "RELATED_IMAGE_BUILD": "registry.example/kmm-builder:test"})
    op.start()
    try:
        cases(op, digests)
    finally:
        kubectl("delete", MCM, NAME, "hubbuild", "--ignore-not-found", "--wait=false",
                check=False)
        wait(lambda: not kj("get", MW, "-A", "-l", f"{MCM_LABEL}={NAME}")["items"], 30)
        st = op.stop()
        t.ok(st == 0, "the hub stops cleanly on SIGTERM", f"exit {st}\n{op.logtext()[-3000:]}")
        t.ok("forbidden" not in op.logtext().lower(),
             "the install's RBAC (deploy/rbac, deploy/hub) allowed every request",
             "\n".join(x for x in op.logtext().splitlines() if "orbidden" in x)[:3000])
        sa.remove()
        for c in ALL_CLUSTERS:
            kubectl("delete", MC, c, "--ignore-not-found", "--wait=false", check=False)
        for ns in [NS] + ALL_CLUSTERS:
            kubectl("delete", "ns", ns, "--wait=false", "--ignore-not-found", check=False)
        hublib.remove_hub_crd()


def cases(op, digests):
    t.ok(wait(lambda: "mode=hub" in op.logtext(), 60), "kmm-operator --hub runs as the hub",
         op.logtext()[-2000:])
    oplib.apply(mcm_obj({"fleet": "a"}))

    mic = wait(lambda: kj("get", MIC, "-n", NS, f"{NAME}-hub-spoke-a", "--ignore-not-found"), 60)
    t.ok(mic and sorted(i["kernelVersion"] for i in mic["spec"]["images"]) == sorted([K1, K2])
         and mic["metadata"]["labels"].get(MCM_LABEL) == NAME
         and mic["metadata"]["ownerReferences"][0]["kind"] == "ManagedClusterModule",
         "MIC <mcm>-<cluster> lists the images of the cluster's kernels (a trailing + trimmed)",
         json.dumps(mic, indent=1)[:3000])

    work = wait(lambda: hublib.manifest_work("hub-spoke-a", NAME), 90)
    t.ok(work is not None, "ManifestWork <mcm> created in the cluster's namespace once the "
         "images exist", op.logtext()[-3000:])
    lit = literals(work) or {}
    t.ok(sorted(lit) == sorted([K1, K2]), "one literal mapping per kernel", json.dumps(lit))
    t.ok(all(lit.get(k, {}).get("containerImage") == f"{REG}/hub/kmod@{digests[k]}"
             for k in (K1, K2)),
         "each image pinned to the digest the registry holds (no tag)", json.dumps(lit, indent=1))
    t.ok(all(m.get("inTreeModulesToRemove") == ["oldkmod"] for m in lit.values()),
         "the in-tree removal list goes with each literal", json.dumps(lit))
    mod = work["spec"]["workload"]["manifests"][0]
    c = mod["spec"]["moduleLoader"]["container"]
    t.ok(mod["metadata"] == {"name": NAME, "namespace": SPOKE_NS} and "build" not in c
         and "sign" not in c and not any("regexp" in m for m in lit.values()),
         "the spoke's Module: <mcm> in spokeNamespace, no build, sign or regexp",
         json.dumps(mod, indent=1))
    meta = work["metadata"]
    t.ok(meta["labels"].get(MCM_LABEL) == NAME
         and meta["ownerReferences"][0]["name"] == NAME
         and meta["ownerReferences"][0]["controller"] is True,
         "ManifestWork labelled with and owned by the MCM", json.dumps(meta, indent=1))
    fb = work["spec"]["manifestConfigs"][0]
    t.ok(fb["resourceIdentifier"] == {"group": "kmm.sigs.x-k8s.io", "resource": "modules",
                                      "name": NAME, "namespace": SPOKE_NS}
         and len(fb["feedbackRules"][0]["jsonPaths"]) == 9,
         "feedback rules bring back the Module's 9 status counters", json.dumps(fb))
    t.ok(hublib.manifest_work("hub-spoke-b", NAME) is None,
         "no ManifestWork for a cluster the selector does not pick")
    st = wait(lambda: (kj("get", MCM, NAME).get("status") or {}).get("numberDesired") == 1, 30)
    t.ok(st, "status.numberDesired counts the ManifestWorks", kj("get", MCM, NAME).get("status"))
    t.ok(wait(lambda: ready() == ("False", "NotApplied"), 30),
         "Ready is False (NotApplied) until the work agent applies it", ready())

    # The work agent reports: Applied and Degraded conditions come back as counters.
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conds = [{"type": ty, "status": s, "reason": "Test", "message": "t",
              "lastTransitionTime": now} for ty, s in (("Applied", "True"), ("Degraded", "False"))]
    kubectl("patch", MW, "-n", "hub-spoke-a", NAME, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": conds}}))
    t.ok(wait(lambda: (kj("get", MCM, NAME).get("status") or {}).get("numberApplied") == 1, 30),
         "status.numberApplied follows the ManifestWork's Applied condition",
         kj("get", MCM, NAME).get("status"))
    t.ok(wait(lambda: ready() == ("True", "Applied"), 30), "then Ready is True (Applied)",
         ready())

    # A kernel more on spoke-a (its claim changes): the ManifestWork follows.
    hublib.set_claim("hub-spoke-a", [K1, K2, K3])
    t.ok(wait(lambda: sorted(literals(hublib.manifest_work("hub-spoke-a", NAME)) or [])
              == sorted([K1, K2, K3]), 90),
         "a kernel added to the claim adds its literal mapping",
         json.dumps(literals(hublib.manifest_work("hub-spoke-a", NAME))))

    # spoke-a leaves the selection (labels), spoke-b joins: works move.
    kubectl("label", MC, "hub-spoke-a", "fleet=x", "--overwrite")
    t.ok(wait(lambda: hublib.manifest_work("hub-spoke-a", NAME) is None, 60),
         "an unselected cluster's ManifestWork is deleted")
    t.ok(wait(lambda: not kj("get", MIC, "-n", NS, f"{NAME}-hub-spoke-a", "--ignore-not-found"),
              30), "and its MIC")
    kubectl("label", MC, "hub-spoke-b", "fleet=a", "--overwrite")
    wb = wait(lambda: hublib.manifest_work("hub-spoke-b", NAME), 90)
    t.ok(sorted(literals(wb) or []) == [K1], "a newly selected cluster gets its ManifestWork",
         op.logtext()[-2000:])
    t.ok(wait(lambda: (kj("get", MCM, NAME).get("status") or {}).get("numberDesired") == 1
              and (kj("get", MCM, NAME).get("status") or {}).get("numberApplied") == 0, 30),
         "counters follow", kj("get", MCM, NAME).get("status"))

    # A cluster without the claim keeps waiting: nothing is sent blind.
    hublib.set_claim("hub-spoke-a", [])
    kubectl("label", MC, "hub-spoke-a", "fleet=a", "--overwrite")
    time.sleep(3)
    t.ok(hublib.manifest_work("hub-spoke-a", NAME) is None,
         "a selected cluster that reports no kernels gets no ManifestWork")

    # An image that does not exist and has a build: built on the hub, nothing sent yet.
    build = mcm_obj({"fleet": "a"})
    build["metadata"]["name"] = "hubbuild"
    c = build["spec"]["moduleSpec"]["moduleLoader"]["container"]
    c["kernelMappings"][0]["containerImage"] = f"{REG}/{BUILT}:${{KERNEL_FULL_VERSION}}"
    c["build"] = {"dockerfileConfigMap": {"name": "hubbuild-dockerfile"}}
    # On the hub the build's ConfigMap lives in the operator's namespace.
    kubectl("create", "configmap", "-n", NS, "hubbuild-dockerfile",
            "--from-literal=dockerfile=FROM scratch", check=False)
    oplib.apply(build)
    mic = "hubbuild-hub-spoke-b"
    states = wait(lambda: {s["image"]: s["status"] for s in (kj(
        "get", MIC, "-n", NS, mic, "--ignore-not-found") or {}).get("status", {}).get(
        "imagesStates") or []} or None, 90)
    t.ok(states == {f"{REG}/{BUILT}:{K1}": "NeedsBuilding"},
         "an image missing with a build: the hub's MIC says NeedsBuilding", states)
    mbsc = wait(lambda: kj("get", "modulebuildsignconfigs.kmm.sigs.x-k8s.io", "-n", NS, mic,
                           "--ignore-not-found"), 60)
    t.ok(mbsc and [(i["image"], i["action"]) for i in mbsc["spec"]["images"]]
         == [(f"{REG}/{BUILT}:{K1}", "BuildImage")],
         "and the build is asked for on the hub (MBSC BuildImage in the operator's namespace)",
         mbsc)
    st = wait(lambda: next((c for c in (kj("get", MCM, "hubbuild").get("status") or {}).get(
        "conditions") or [] if c["type"] == "Ready" and c["reason"] == "ImagesNotReady"), None),
        30)
    t.ok(st and st["status"] == "False" and "1 cluster(s) wait" in st["message"],
         "Ready is False (ImagesNotReady) while the hub builds", st)
    t.ok(hublib.manifest_work("hub-spoke-b", "hubbuild") is None,
         "no ManifestWork before every image exists")
    # The "build": the image pushed as the builder would, then a hub node for the
    # build pod, which kwok completes; only then the ManifestWork goes out, pinned
    # to what was built.
    built = push(K1, repo=BUILT)
    oplib.testenv("nodes", "add", "hub-builder", "--count", "1", "--kernel", K1,
                  "--label", "kubernetes.io/os=linux")
    try:
        work = wait(lambda: hublib.manifest_work("hub-spoke-b", "hubbuild"), 120)
        lit = literals(work) or {}
        t.ok(built and list(lit) == [K1] and
             lit[K1].get("containerImage") == f"{REG}/{BUILT}@{built}",
             "once the hub's build succeeded (MBSC Success, MIC Exists), the ManifestWork goes "
             "out with the built image pinned by digest",
             (built, lit, (kj("get", MIC, "-n", NS, mic, "--ignore-not-found") or {}).get(
                 "status")))
    finally:
        kubectl("delete", "node", "hub-builder-1", "--ignore-not-found", "--wait=false",
                check=False)
    kubectl("delete", MCM, "hubbuild", "--wait=false")
    t.ok(wait(lambda: not kj("get", MIC, "-n", NS, mic, "--ignore-not-found"), 60),
         "its MIC goes with the MCM")

    # The MCM goes: its ManifestWorks and MICs go with it.
    kubectl("delete", MCM, NAME, "--wait=false")
    t.ok(wait(lambda: not kj("get", MW, "-A", "-l", f"{MCM_LABEL}={NAME}")["items"]
              and not kj("get", MIC, "-n", NS, "-l", f"{MCM_LABEL}={NAME}")["items"], 60),
         "deleting the MCM deletes its ManifestWorks and MICs")


if __name__ == "__main__":
    hublib.run_main(t, main)
