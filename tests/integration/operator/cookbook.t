#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator against the testenv: the cookbook situations that need no
build or sign, one namespace and node prefix (op-cb-*) per case, one
operator for the whole suite."""

import os
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, PodWatch, Suite, Tap, apply, condition, force_cleanup, kj,  # noqa: E402
                   kubectl, module, module_obj, nmc, nmc_entry, node_labels, preflight,
                   push_image, ready_label, ready_on, testenv, wait)

K1 = "6.1.0-18-amd64"
K2 = "6.8.0-1-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns
cond = condition


def mapping(image, regexp="^.+$"):
    return [{"regexp": regexp, "containerImage": image, "registryTLS": {"insecure": True}}]


def not_ready_on(ns, mod, nodes):
    return all(ready_label(ns, mod) not in node_labels(n) for n in nodes)


def status(ns, mod):
    m = module(ns, mod) or {}
    return (m.get("status") or {}).get("moduleLoader") or {}


def delete_and_wait(ns, mod, nodes, timeout=60):
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, mod, "--wait=false")
    gone = wait(lambda: module(ns, mod) is None, timeout)
    return gone and not_ready_on(ns, mod, nodes)


def policy_active(ns, labels, annotation):
    """Server-side dry-run of a pod: has the admission policy started mutating?"""
    import json as _j
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "op-cb-probe", "namespace": ns, "labels": labels},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=_j.dumps(pod), check=False)
    try:
        return annotation in _j.loads(out)["metadata"].get("annotations", {})
    except ValueError:
        return False


# ---------------------------------------------------------------------------

@case
def prebuilt_on_selected_nodes():
    ns = new_ns("op-cb-pre")
    nodes = add_nodes("op-cb-pre-n", 3)
    for n in nodes[:2]:
        kubectl("label", "node", n, "op-cb/pre=yes")
    img = push_image("op-cb/pre:" + K1, [K1])
    w = PodWatch(ns)
    apply(module_obj(ns, "pre", {"op-cb/pre": "yes"}, mapping(f"{REG}/op-cb/pre:${{KERNEL_FULL_VERSION}}")))
    ok = wait(lambda: ready_on(ns, "pre", nodes[:2]), 60)
    t.ok(ok, "pre-built image: ready label on both selected nodes")
    t.ok(not_ready_on(ns, "pre", nodes[2:]) and nmc_entry(nodes[2], "spec", ns, "pre") is None,
         "pre-built image: unselected node untouched")
    st = wait(lambda: status(ns, "pre").get("availableNumber") == 2 and status(ns, "pre"), 30)
    t.ok(st and st.get("nodesMatchingSelectorNumber") == 2 and st.get("desiredNumber") == 2,
         "pre-built image: status counts 2/2/2", st)
    c = wait(lambda: cond(ns, "pre", "Ready").get("status") == "True" and cond(ns, "pre", "Ready"), 30)
    t.ok(c, "pre-built image: Ready condition True", cond(ns, "pre", "Ready"))
    m = module(ns, "pre")
    t.ok("kmm.node.kubernetes.io/module-finalizer" in m["metadata"].get("finalizers", []),
         "pre-built image: Module finalizer")
    nsobj = kj("get", "ns", ns)
    t.ok("kmm.node.k8s.io/contains-modules" in nsobj["metadata"].get("labels", {}),
         "pre-built image: namespace label")
    e = nmc_entry(nodes[0], "status", ns, "pre")
    node = kj("get", "node", nodes[0])
    t.ok(e and e["config"]["containerImage"] == img and e.get("bootId") == node["status"]["nodeInfo"]["bootID"],
         "pre-built image: NMC status has the image and the node's bootID", e)
    o = nmc(nodes[0])
    labs = o["metadata"].get("labels", {})
    t.ok(f"beta.kmm.node.kubernetes.io/{ns}.pre.module-configured" in labs
         and f"beta.kmm.node.kubernetes.io/{ns}.pre.module-in-use" in labs
         and o["metadata"]["ownerReferences"][0]["kind"] == "Node",
         "pre-built image: NMC labels and Node owner", o["metadata"])
    pods = w.created("Load", nodes[0])
    w.close()
    p = pods[0] if pods else None
    problems = check_loader_shape(p, nodes[0], "pre", ns, img) if p else ["no loader seen"]
    t.ok(not problems, "pre-built image: loader pod has upstream's shape", "\n".join(problems))
    ev = kj("get", "events", "-n", "default", "--field-selector",
            f"involvedObject.name={nodes[0]},reason=ModuleLoaded")
    t.ok(any(f"{ns}/pre" in i.get("message", "") for i in ev["items"]),
         "pre-built image: ModuleLoaded event on the Node")
    t.ok(wait(lambda: not kj("get", "pods", "-n", ns)["items"], 30) is not None,
         "pre-built image: worker pods cleaned up once recorded")
    # selector change moves the module
    w = PodWatch(ns)
    kubectl("label", "node", nodes[2], "op-cb/pre=yes")
    kubectl("label", "node", nodes[0], "op-cb/pre-")
    ok = wait(lambda: ready_on(ns, "pre", nodes[1:]) and not_ready_on(ns, "pre", nodes[:1]), 60)
    t.ok(ok, "selector change: module moves to the newly selected node")
    t.ok(wait(lambda: w.created("Unload", nodes[0]), 10),
         "selector change: unloader ran on the deselected node")
    u = w.created("Unload", nodes[0])
    t.ok(u and "securityContext" in u[0]["spec"]["containers"][0]
         and not u[0]["spec"]["containers"][0]["securityContext"].get("privileged")
         and u[0]["spec"]["containers"][0]["args"][:2] == ["kmod", "unload"],
         "selector change: unloader is not privileged and runs kmod unload")
    w.close()
    t.ok(wait(lambda: nmc_entry(nodes[0], "status", ns, "pre") is None, 30) is not None
         and f"beta.kmm.node.kubernetes.io/{ns}.pre.module-in-use"
         not in (nmc(nodes[0])["metadata"].get("labels") or {}),
         "selector change: in-use label gone after unload")
    # delete: unloaded everywhere, Module gone, namespace label gone
    t.ok(delete_and_wait(ns, "pre", nodes), "delete: unloaded on every node and Module gone")
    t.ok(wait(lambda: "kmm.node.k8s.io/contains-modules" not in kj("get", "ns", ns)["metadata"].get("labels", {}), 20),
         "delete: namespace label removed with the last Module")


def check_loader_shape(p, node, mod, ns, img):
    bad = []
    md, spec = p["metadata"], p["spec"]

    def want(cond, what):
        if not cond:
            bad.append(what)
    want(md["name"] == f"kmm-worker-{node}-{mod}", f"name {md['name']}")
    lab = md.get("labels", {})
    want(lab.get("app.kubernetes.io/name") == "kmm" and lab.get("app.kubernetes.io/component") == "worker"
         and lab.get("app.kubernetes.io/part-of") == "kmm", "app labels")
    want(lab.get("kmm.node.kubernetes.io/module.name") == mod, "module.name label")
    want(lab.get("kmm.node.kubernetes.io/worker-action") == "Load", "worker-action label")
    ann = md.get("annotations", {})
    want("kmm.node.kubernetes.io/worker-config" in ann, "worker-config annotation")
    want("kmm.node.kubernetes.io/worker-hash" in ann, "worker-hash annotation")
    want("kmm.node.kubernetes.io/nodemodulesconfig-reconciler" in md.get("finalizers", []), "finalizer")
    own = md.get("ownerReferences", [{}])[0]
    want(own.get("kind") == "NodeModulesConfig" and own.get("name") == node and own.get("controller"),
         "controller owner NMC")
    want(spec.get("nodeName") == node, "nodeName")
    want(spec.get("restartPolicy") == "OnFailure", "restartPolicy")
    want(spec.get("serviceAccountName") == "default", "serviceAccountName")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    want(set(vols) >= {"config", "lib-modules", "tmp"}, f"volumes {sorted(vols)}")
    want(vols.get("lib-modules", {}).get("hostPath", {}).get("path") == "/lib/modules", "lib-modules hostPath")
    inits = spec.get("initContainers", [])
    want([i.get("name") for i in inits] == ["install-copier", "image-extractor"], "init containers")
    init = (inits + [{}, {}])[1]
    want(init.get("image") == img, "image-extractor image")
    want(init.get("command") == ["/run/kmm/bin/kmm-worker-copy"] and
         init.get("args") == [f"/opt/lib/modules/{K1}", f"/tmp/opt/lib/modules/{K1}"], "extractor copier args")
    c = spec["containers"][0]
    want(c["name"] == "worker" and c["image"] == "registry.example/kmm-worker:test", "worker image")
    want(c["args"] == ["kmod", "load", "/etc/kmm-worker/config.yaml"], f"args {c['args']}")
    mounts = {(m["name"], m["mountPath"]) for m in c["volumeMounts"]}
    want({("config", "/etc/kmm-worker"), ("lib-modules", "/lib/modules"),
          ("lib-modules", "/host/lib/modules"), ("tmp", "/tmp")} <= mounts, f"mounts {mounts}")
    sc = c.get("securityContext", {})
    want(sc.get("capabilities", {}).get("add") == ["SYS_MODULE"] and sc.get("runAsUser") == 0
         and sc.get("seLinuxOptions", {}).get("type") == "spc_t", f"securityContext {sc}")
    want(c.get("resources", {}).get("limits", {}).get("memory") == "128Mi", "resources")
    return bad


@case
def kernels_and_mappings():
    ns = new_ns("op-cb-kern")
    n1 = add_nodes("op-cb-kern-a", 1, K1, ["op-cb/kern=yes"])
    n2 = add_nodes("op-cb-kern-b", 1, K2, ["op-cb/kern=yes"])
    n3 = add_nodes("op-cb-kern-c", 1, "5.10.0-30-amd64", ["op-cb/kern=yes"])
    img1 = push_image("op-cb/kern-61:v1", [K1])
    img2 = push_image("op-cb/kern-68:v1", [K2])
    maps = [{"literal": K1, "containerImage": img1, "registryTLS": {"insecure": True}},
            {"regexp": r"^6\.8\.", "containerImage": img2, "registryTLS": {"insecure": True}}]
    apply(module_obj(ns, "kern", {"op-cb/kern": "yes"}, maps))
    ok = wait(lambda: ready_on(ns, "kern", n1 + n2), 60)
    t.ok(ok, "different kernels: loaded on both mapped nodes")
    e1 = nmc_entry(n1[0], "spec", ns, "kern")
    e2 = nmc_entry(n2[0], "spec", ns, "kern")
    t.ok(e1 and e2 and e1["config"]["containerImage"] == img1 and e2["config"]["containerImage"] == img2
         and e2["config"]["kernelVersion"] == K2,
         "different kernels: each node gets its kernel's image", (e1, e2))
    t.ok(nmc_entry(n3[0], "spec", ns, "kern") is None and not_ready_on(ns, "kern", n3),
         "no mapping: node with an unmapped kernel is not targeted")
    # The status follows NMC progress in batches (seconds), not with the node labels.
    counted = lambda: (lambda st: st.get("desiredNumber") == 2 and st.get("availableNumber") == 2
                       and st.get("nodesMatchingSelectorNumber") == 3)(status(ns, "kern"))
    t.ok(wait(counted, 30), "no mapping: desired 2 of 3 matching", status(ns, "kern"))
    # kernel upgrade: K1 node moves to K2 and gets the K2 image
    old_boot = kj("get", "node", n1[0])["status"]["nodeInfo"]["bootID"]
    testenv("nodes", "upgrade", n1[0], "--kernel", K2, "--down-for", "1")
    ok = wait(lambda: (nmc_entry(n1[0], "status", ns, "kern") or {}).get("config", {}).get("containerImage") == img2, 60)
    t.ok(ok, "kernel upgrade: status shows the new kernel's image after the loader ran")
    e = nmc_entry(n1[0], "status", ns, "kern") or {}
    t.ok(e.get("bootId") not in (None, old_boot) and ready_on(ns, "kern", n1),
         "kernel upgrade: loaded into the new boot, ready again", e)
    # reboot: same kernel, new bootID -> reloaded
    boot = kj("get", "node", n2[0])["status"]["nodeInfo"]["bootID"]
    testenv("nodes", "reboot", n2[0], "--down-for", "1")
    new_boot = kj("get", "node", n2[0])["status"]["nodeInfo"]["bootID"]
    ok = wait(lambda: (nmc_entry(n2[0], "status", ns, "kern") or {}).get("bootId") == new_boot, 60)
    t.ok(ok and new_boot != boot and ready_on(ns, "kern", n2), "reboot: module reloaded into the new boot")
    t.ok(delete_and_wait(ns, "kern", n1 + n2 + n3), "delete: kernels Module gone and unloaded")


@case
def features_in_pods():
    ns = new_ns("op-cb-feat")
    nodes = add_nodes("op-cb-feat-n", 1, K1, ["op-cb/feat=yes"])
    img = push_image("op-cb/feat:" + K1, [K1], files=("a.ko", "b.ko"), firmware="/firmware")
    w = PodWatch(ns)
    modprobe = {"moduleName": "kmm_a", "modulesLoadingOrder": ["kmm_a", "kmm_b", "kmm_c"],
                "parameters": ["debug=1", "mode=fast"], "args": {"load": ["-v"], "unload": ["-v"]},
                "firmwarePath": "/firmware"}
    apply(module_obj(ns, "feat", {"op-cb/feat": "yes"}, mapping(img), modprobe=modprobe,
                     inTreeModulesToRemove=["irdma", "ice"]))
    ok = wait(lambda: ready_on(ns, "feat", nodes), 60)
    t.ok(ok, "features: loaded")
    p = (w.created("Load", nodes[0]) or [None])[0]
    w.close()
    if not p:
        for d in ("softdep", "in-tree", "firmware", "parameters"):
            t.ok(False, f"features: {d}: no loader pod seen")
        return
    ann = p["metadata"]["annotations"]
    vols = {v["name"]: v for v in p["spec"]["volumes"]}
    c = p["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    t.ok(ann.get("kmm.node.kubernetes.io/modules-order") == "softdep kmm_a pre: kmm_b\nsoftdep kmm_b pre: kmm_c\n"
         and "modules-order" in vols and mounts.get("modules-order") == "/etc/modprobe.d",
         "modulesLoadingOrder: softdep annotation, volume and mount", ann)
    import json as _j
    cfg = _j.loads(ann["kmm.node.kubernetes.io/worker-config"])
    t.ok(cfg.get("inTreeModulesToRemove") == ["irdma", "ice"], "in-tree removal list in the worker config", cfg)
    sc = c.get("securityContext", {})
    t.ok("privileged" not in sc and sc.get("runAsUser") == 0
         and sc.get("capabilities", {}).get("add") == ["SYS_MODULE"]
         and vols.get("firmware-class", {}).get("hostPath", {}).get("path")
         == "/sys/module/firmware_class/parameters"
         and vols.get("lib-firmware", {}).get("hostPath", {}).get("path") == "/lib/firmware"
         and c["args"][-2:] == ["--firmware-path", "/lib/firmware"]
         and p["spec"]["initContainers"][1].get("args", [])[-2:] == ["/firmware", "/tmp/firmware"],
         "firmware: uid 0 with SYS_MODULE only (not privileged), firmware and firmware_class "
         "mounts, --firmware-path, the copier's firmware pair", (sc, c["args"]))
    mp = cfg.get("modprobe", {})
    t.ok(mp.get("parameters") == ["debug=1", "mode=fast"] and mp.get("args", {}).get("load") == ["-v"],
         "parameters and args in the worker config", mp)
    t.ok(delete_and_wait(ns, "feat", nodes), "delete: features Module gone")


@case
def cordon_unloads():
    ns = new_ns("op-cb-cord")
    nodes = add_nodes("op-cb-cord-n", 2, K1, ["op-cb/cord=yes"])
    img = push_image("op-cb/cord:" + K1, [K1])
    apply(module_obj(ns, "cord", {"op-cb/cord": "yes"}, mapping(img)))
    t.ok(wait(lambda: ready_on(ns, "cord", nodes), 60), "cordon: loaded on both nodes first")
    w = PodWatch(ns)
    testenv("nodes", "cordon", nodes[0])
    ok = wait(lambda: not_ready_on(ns, "cord", nodes[:1]) and nmc_entry(nodes[0], "status", ns, "cord") is None, 60)
    t.ok(ok and w.created("Unload", nodes[0]), "cordon: unloaded from the cordoned node")
    t.ok(ready_on(ns, "cord", nodes[1:]), "cordon: other node keeps the module")
    testenv("nodes", "uncordon", nodes[0])
    t.ok(wait(lambda: ready_on(ns, "cord", nodes[:1]), 60), "uncordon: reloaded")
    w.close()
    t.ok(delete_and_wait(ns, "cord", nodes), "delete: cordon Module gone")


@case
def worker_failure():
    ns = new_ns("op-cb-fail")
    nodes = add_nodes("op-cb-fail-n", 1, K1, ["op-cb/fail=yes"])
    img = push_image("op-cb/fail:" + K1, [K1])
    # A MutatingAdmissionPolicy plays a broken worker: its pods crash (kwok honours the annotation).
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
              "metadata": {"name": "op-cb-fail"},
              "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                               "operations": ["CREATE"], "resources": ["pods"]}],
                                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
                       "failurePolicy": "Fail", "reinvocationPolicy": "Never",
                       "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                           'Object{metadata: Object.metadata{annotations: {"kmm.testenv/outcome": "fail", "kmm.testenv/exit-code": "3"}}}'}}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
               "metadata": {"name": "op-cb-fail"}, "spec": {"policyName": "op-cb-fail"}}
    apply(policy)
    apply(binding)
    t.ok(wait(lambda: policy_active(ns, {}, "kmm.testenv/outcome"), 30), "worker failure: admission policy active")
    try:
        apply(module_obj(ns, "fail", {"op-cb/fail": "yes"}, mapping(img)))
        c = wait(lambda: "exit code 3" in cond(ns, "fail", "Ready").get("message", "") and cond(ns, "fail", "Ready"), 60)
        t.ok(c and c.get("status") == "False", "worker failure: Ready False says which node and exit code",
             cond(ns, "fail", "Ready"))
        pods = [p for p in kj("get", "pods", "-n", ns)["items"]]
        t.ok(pods and pods[0]["status"]["containerStatuses"][0].get("restartCount", 0) >= 1,
             "worker failure: the loader is retried (restartPolicy OnFailure)")
        t.ok(not_ready_on(ns, "fail", nodes), "worker failure: no ready label")
    finally:
        kubectl("delete", "mutatingadmissionpolicybinding", "op-cb-fail", "--ignore-not-found", check=False)
        kubectl("delete", "mutatingadmissionpolicy", "op-cb-fail", "--ignore-not-found", check=False)
    # The fix: a new spec replaces the failing loader (its hash differs), which now succeeds.
    wait(lambda: not policy_active(ns, {}, "kmm.testenv/outcome"), 30)
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, "fail", "--type=merge", "-p",
            '{"spec":{"moduleLoader":{"container":{"modprobe":{"parameters":["fixed=1"]}}}}}')
    t.ok(wait(lambda: ready_on(ns, "fail", nodes), 60), "worker failure: fixed spec replaces the loader and loads")
    t.ok(wait(lambda: cond(ns, "fail", "Ready").get("status") == "True", 30), "worker failure: Ready True afterwards")
    t.ok(delete_and_wait(ns, "fail", nodes), "delete: failure Module gone")


@case
def missing_image_and_delete():
    ns = new_ns("op-cb-miss")
    nodes = add_nodes("op-cb-miss-n", 1, K1, ["op-cb/miss=yes"])
    tag = f"run{os.getpid()}"  # never pushed before, even on a reused testenv
    apply(module_obj(ns, "miss", {"op-cb/miss": "yes"}, mapping(f"{REG}/op-cb/missing:{tag}")))
    c = wait(lambda: "does not exist" in cond(ns, "miss", "Ready").get("message", "") and cond(ns, "miss", "Ready"), 30)
    t.ok(c, "missing image: not added to the NMC, status says the image does not exist", cond(ns, "miss", "Ready"))
    t.ok(nmc_entry(nodes[0], "spec", ns, "miss") is None, "missing image: no NMC entry, no worker pod")
    img = push_image(f"op-cb/missing:{tag}", [K1])
    t.ok(wait(lambda: ready_on(ns, "miss", nodes), 60), "missing image: loads once the image is pushed")
    t.ok(img and delete_and_wait(ns, "miss", nodes), "delete: missing-image Module gone")


@case
def unloader_cannot_pull():
    """Upstream #1004: the image vanished, the unloader cannot pull it."""
    ns = new_ns("op-cb-gone")
    nodes = add_nodes("op-cb-gone-n", 1, K1, ["op-cb/gone=yes"])
    img = push_image("op-cb/gone:" + K1, [K1])
    apply(module_obj(ns, "gone", {"op-cb/gone": "yes"}, mapping(img)))
    t.ok(wait(lambda: ready_on(ns, "gone", nodes), 60), "image vanished: loaded first")
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
              "metadata": {"name": "op-cb-gone"},
              "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                               "operations": ["CREATE"], "resources": ["pods"]}],
                                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                            "objectSelector": {"matchLabels": {"kmm.node.kubernetes.io/worker-action": "Unload"}}},
                       "failurePolicy": "Fail", "reinvocationPolicy": "Never",
                       "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                           'Object{metadata: Object.metadata{annotations: {"kmm.testenv/outcome": "pending", "kmm.testenv/waiting-reason": "ImagePullBackOff"}}}'}}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
               "metadata": {"name": "op-cb-gone"}, "spec": {"policyName": "op-cb-gone"}}
    apply(policy)
    apply(binding)
    t.ok(wait(lambda: policy_active(ns, {"kmm.node.kubernetes.io/worker-action": "Unload"}, "kmm.testenv/outcome"), 30),
         "image vanished: admission policy active")
    try:
        kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gone", "--wait=false")
        stuck = wait(lambda: [p for p in kj("get", "pods", "-n", ns)["items"]
                              if p["status"].get("phase") == "Pending"], 30)
        t.ok(stuck, "image vanished: the unloader is stuck pulling")
        gone = wait(lambda: module(ns, "gone") is None, 90)
        t.ok(gone, "image vanished: kmm gives up after the timeout and the Module goes away")
        ev = kj("get", "events", "-n", "default", "--field-selector",
                f"involvedObject.name={nodes[0]},reason=ModuleUnloadFailed")
        t.ok(ev["items"] and ev["items"][0]["type"] == "Warning",
             "image vanished: Warning event ModuleUnloadFailed on the Node")
        t.ok(wait(lambda: not kj("get", "pods", "-n", ns)["items"], 30) is not None
             and not_ready_on(ns, "gone", nodes), "image vanished: no pod left, no ready label")
    finally:
        kubectl("delete", "mutatingadmissionpolicybinding", "op-cb-gone", "--ignore-not-found", check=False)
        kubectl("delete", "mutatingadmissionpolicy", "op-cb-gone", "--ignore-not-found", check=False)


@case
def tls_registry_with_ca_and_pull_secret():
    """Image on the TLS registry with basic auth: the operator's existence check
    verifies the registry with registryCAFile and logs in with the Module's
    imageRepoSecret (no registryTLS shortcuts)."""
    import base64
    import json as _j
    tls = os.environ["KMM_TESTENV_REGISTRY_TLS"]
    user = os.environ["KMM_TESTENV_REGISTRY_USER"]
    password = os.environ["KMM_TESTENV_REGISTRY_PASSWORD"]
    ns = new_ns("op-cb-tls")
    nodes = add_nodes("op-cb-tls-n", 2, labels=["op-cb/tls=yes"])
    with tempfile.TemporaryDirectory() as d:
        kd = os.path.join(d, "opt", "lib", "modules", K1)
        os.makedirs(kd)
        with open(os.path.join(kd, "tls.ko"), "w") as fh:
            fh.write("not really a module\n")
        testenv("image", "push", d, f"{tls}/op-cb/tls:{K1}")
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    cfg = _j.dumps({"auths": {tls: {"auth": auth}}})
    apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
           "metadata": {"name": "op-cb-tls-pull", "namespace": ns},
           "data": {".dockerconfigjson": base64.b64encode(cfg.encode()).decode()}})
    m = module_obj(ns, "tls", {"op-cb/tls": "yes"},
                   [{"regexp": "^.+$", "containerImage": f"{tls}/op-cb/tls:${{KERNEL_FULL_VERSION}}"}])
    m["spec"]["imageRepoSecret"] = {"name": "op-cb-tls-pull"}
    apply(m)
    t.ok(wait(lambda: ready_on(ns, "tls", nodes), 60),
         "TLS registry: image found with the CA bundle and pull secret, module ready on both nodes",
         cond(ns, "tls", "Ready"))
    # The same image without credentials: the check fails with the registry's reason.
    m = module_obj(ns, "tls-anon", {"op-cb/tls": "yes"},
                   [{"regexp": "^.+$", "containerImage": f"{tls}/op-cb/tls:${{KERNEL_FULL_VERSION}}"}])
    apply(m)
    c = wait(lambda: (lambda c: c if "401" in c.get("message", "") or "unauthorized" in c.get("message", "").lower()
                      or "authentication" in c.get("message", "").lower() else None)(cond(ns, "tls-anon", "Ready")), 60)
    t.ok(c and not_ready_on(ns, "tls-anon", nodes),
         "TLS registry without the pull secret: not loaded, the condition says why", cond(ns, "tls-anon", "Ready"))
    t.ok(delete_and_wait(ns, "tls", nodes) and delete_and_wait(ns, "tls-anon", nodes),
         "TLS registry: Modules deleted")


def main():
    preflight()
    op = Operator("cookbook", "op-cb-system",
                  extra_env={"KMM_UNLOAD_IMAGE_PULL_TIMEOUT_SECONDS": "20"},
                  extra_config=[f"registryCAFile: {os.environ.get('KMM_TESTENV_REGISTRY_TLS_CA', '')}"])
    kubectl("create", "namespace", "op-cb-system", check=False)
    NAMESPACES.append("op-cb-system")
    op.start()
    try:
        t.ok(op.ports() is not None, "operator: started, probes and metrics bound", op.logtext()[-2000:])
        st, body = op.get("/healthz")
        t.ok(st == 200, "operator: /healthz ok")
        st, body = wait(lambda: (lambda r: r if r[0] == 200 else None)(op.get("/readyz")), 30) or (0, "")
        t.ok(st == 200, "operator: /readyz ok once caches synced")
        for fn in CASES:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
        st, body = op.get("/metrics")
        want = ["kmm_module_num", "controller_runtime_reconcile_total{controller=\"module\"",
                "controller_runtime_reconcile_time_seconds_bucket", "workqueue_depth",
                "workqueue_queue_duration_seconds_bucket", "rest_client_requests_total{method=\"POST\",code=\"201\"}",
                "process_resident_memory_bytes", "process_cpu_seconds_total"]
        missing = [w for w in want if w not in body]
        t.ok(st == 200 and not missing, "operator: /metrics has kmm_*, reconcile, queue, API and process metrics",
             f"missing: {missing}")
    finally:
        rc = op.stop()
        t.ok(rc == 0, "operator: SIGTERM exits 0", op.logtext()[-3000:])
        san = [ln for ln in op.logtext().splitlines() if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup("op-cb-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
