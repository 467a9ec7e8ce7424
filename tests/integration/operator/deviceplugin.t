#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's device plugin against the testenv: the DaemonSet per Module
in upstream's shape, its pods created by the controller-manager's DaemonSet
controller on kwok nodes (Running and Ready at once, tests/env/kwok/stages.yaml),
the device-plugin-target and .device-plugin-ready node labels, status.devicePlugin
and the DEVICE-PLUGINS column, a cordon evicting the plugin before the unload,
a spec change rolled into the DaemonSet, a new version's DaemonSet replacing
the old one, a Module with only a device plugin, and everything gone with the
Module. One namespace and node prefix (op-dp-*) per case."""

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, Suite, Tap, apply, force_cleanup, kj, kubectl,  # noqa: E402
                   module, module_obj, node_labels, preflight, push_image, ready_on, testenv,
                   wait)

K1 = "6.1.0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
ROLE = "kmm.node.kubernetes.io/role"
MODNAME = "kmm.node.kubernetes.io/module.name"
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns


def mapping(image):
    return [{"regexp": "^.+$", "containerImage": image, "registryTLS": {"insecure": True}}]


def target(ns, mod):
    return f"kmm.node.kubernetes.io/{ns}.{mod}.device-plugin-target"


def dp_ready(ns, mod):
    return f"kmm.node.kubernetes.io/{ns}.{mod}.device-plugin-ready"


def daemonsets(ns, mod):
    return kj("get", "daemonsets", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}=device-plugin")["items"]


def dp_pods(ns, mod):
    return [p for p in kj("get", "pods", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}=device-plugin")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def dp_status(ns, mod):
    return ((module(ns, mod) or {}).get("status") or {}).get("devicePlugin") or {}


def labelled(nodes, key, present=True):
    return all((key in node_labels(n)) == present for n in nodes)


def pods_on(ns, mod, nodes):
    """Running device plugin pods on exactly these nodes."""
    got = sorted(p["spec"].get("nodeName") or "" for p in dp_pods(ns, mod)
                 if (p.get("status") or {}).get("phase") == "Running")
    return got == sorted(nodes)


def check_ds_shape(ds, ns, mod, uid, node_selector, version=None):
    bad = []

    def want(c, what):
        if not c:
            bad.append(what)
    md, spec = ds["metadata"], ds["spec"]
    labels = {MODNAME: mod, ROLE: "device-plugin"}
    if version:
        labels[f"beta.kmm.node.kubernetes.io/version-schedule-pod.{ns}.{mod}"] = version
    want(md.get("generateName") == f"{mod}-device-plugin-" and md["name"].startswith(f"{mod}-device-plugin-"),
         f"name {md['name']} generateName {md.get('generateName')}")
    want(md.get("labels") == labels, f"labels {md.get('labels')}")
    want(spec["selector"].get("matchLabels") == labels, f"selector {spec['selector']}")
    own = md.get("ownerReferences") or [{}]
    want(len(own) == 1 and own[0].get("kind") == "Module" and own[0].get("name") == mod
         and own[0].get("uid") == uid and own[0].get("controller") is True, f"owner {own}")
    ps = spec["template"]["spec"]
    want(spec["template"]["metadata"].get("labels") == labels, f"pod labels {spec['template']['metadata']}")
    want(ps.get("nodeSelector") == node_selector, f"nodeSelector {ps.get('nodeSelector')}")
    want(ps.get("priorityClassName") == "system-node-critical", f"priorityClassName {ps.get('priorityClassName')}")
    want(ps.get("serviceAccountName") == "op-dp-sa", f"serviceAccountName {ps.get('serviceAccountName')}")
    want(ps.get("tolerations") == [{"key": "op-dp/taint", "operator": "Exists", "effect": "NoSchedule"}],
         f"tolerations {ps.get('tolerations')}")
    vols = {v["name"]: v for v in ps.get("volumes") or []}
    want((vols.get("kubelet-device-plugins") or {}).get("hostPath") ==
         {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}, f"volumes {ps.get('volumes')}")
    want("dev" in vols, "user volume dev")
    c = (ps.get("containers") or [{}])[0]
    want(c.get("name") == "device-plugin" and c.get("image") == "registry.example/op-dp/plugin:1",
         f"container {c.get('name')} {c.get('image')}")
    want((c.get("securityContext") or {}).get("privileged") is True, f"securityContext {c.get('securityContext')}")
    mounts = [(m["name"], m["mountPath"]) for m in c.get("volumeMounts") or []]
    want(mounts == [("kubelet-device-plugins", "/var/lib/kubelet/device-plugins"), ("dev", "/dev")],
         f"mounts {mounts}")
    ic = (ps.get("initContainers") or [{}])[0]
    want(ic.get("name") == "device-plugin-init" and (ic.get("securityContext") or {}).get("privileged") is True,
         f"init container {ic}")
    return bad


def device_plugin(image="registry.example/op-dp/plugin:1"):
    return {"serviceAccountName": "op-dp-sa",
            "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}],
            "initContainer": {"image": "registry.example/op-dp/init:1"},
            "container": {"image": image, "volumeMounts": [{"name": "dev", "mountPath": "/dev"}]}}


def column(ns, mod):
    out = kubectl("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, mod)
    head, row = out.splitlines()[:2]
    cols = head.split()
    return dict(zip(cols, row.split())).get("DEVICE-PLUGINS")


# ---------------------------------------------------------------------------

@case
def with_module_loader():
    ns = new_ns("op-dp-ml")
    kubectl("create", "serviceaccount", "op-dp-sa", "-n", ns)
    nodes = add_nodes("op-dp-ml-n", 3)
    for n in nodes[:2]:
        kubectl("label", "node", n, "op-dp/ml=yes")
    img = push_image("op-dp/ml:" + K1, [K1])
    m = module_obj(ns, "gpu", {"op-dp/ml": "yes"}, mapping(img))
    m["spec"]["devicePlugin"] = device_plugin()
    m["spec"]["tolerations"] = [{"key": "op-dp/taint", "operator": "Exists", "effect": "NoSchedule"}]
    apply(m)
    uid = module(ns, "gpu")["metadata"]["uid"]
    t.ok(wait(lambda: ready_on(ns, "gpu", nodes[:2]), 60), "module loaded on both selected nodes")
    dss = wait(lambda: daemonsets(ns, "gpu"), 30) or []
    bad = check_ds_shape(dss[0], ns, "gpu", uid, {f"kmm.node.kubernetes.io/{ns}.gpu.ready": "",
                                                   target(ns, "gpu"): ""}) if dss else ["no DaemonSet"]
    t.ok(len(dss) == 1 and not bad, "one DaemonSet in upstream's shape (name, labels, selector, owner, node "
         "selector on ready + device-plugin-target, system-node-critical, SA, tolerations, volumes, "
         "privileged container with the device-plugins mount, init container)", bad)
    t.ok(wait(lambda: labelled(nodes[:2], target(ns, "gpu")), 30) and labelled(nodes[2:], target(ns, "gpu"), False),
         "device-plugin-target on the selected schedulable nodes only")
    t.ok(wait(lambda: pods_on(ns, "gpu", nodes[:2]), 60),
         "the DaemonSet controller runs a device plugin pod on each selected node",
         [(p["metadata"]["name"], p["spec"].get("nodeName"), p.get("status", {}).get("phase"))
          for p in dp_pods(ns, "gpu")])
    t.ok(wait(lambda: labelled(nodes[:2], dp_ready(ns, "gpu")), 30) and labelled(nodes[2:], dp_ready(ns, "gpu"), False),
         ".device-plugin-ready on the nodes whose plugin pod is Ready", [node_labels(n) for n in nodes])
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: dp_status(ns, "gpu") == want, 30), "status.devicePlugin counts 2/2/2", dp_status(ns, "gpu"))
    ml = ((module(ns, "gpu") or {}).get("status") or {}).get("moduleLoader") or {}
    t.ok(ml.get("availableNumber") == 2, "status.moduleLoader still written by the Module controller", ml)
    t.ok(wait(lambda: column(ns, "gpu") == "2", 10), "DEVICE-PLUGINS column shows 2",
         kubectl("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu"))

    # A cordon: the target label goes, the plugin pod leaves, the module is unloaded.
    testenv("nodes", "cordon", nodes[0])
    t.ok(wait(lambda: labelled(nodes[:1], target(ns, "gpu"), False), 30), "cordon: device-plugin-target removed")
    t.ok(wait(lambda: pods_on(ns, "gpu", nodes[1:2]), 60) and wait(lambda: labelled(nodes[:1], dp_ready(ns, "gpu"), False), 30),
         "cordon: the device plugin pod left the node, .device-plugin-ready removed")
    t.ok(wait(lambda: labelled(nodes[:1], f"kmm.node.kubernetes.io/{ns}.gpu.ready", False), 60),
         "cordon: the module was unloaded")
    t.ok(wait(lambda: dp_status(ns, "gpu").get("desiredNumber") == 1, 30), "cordon: desiredNumber 1",
         dp_status(ns, "gpu"))
    testenv("nodes", "uncordon", nodes[0])
    t.ok(wait(lambda: pods_on(ns, "gpu", nodes[:2]), 90) and wait(lambda: labelled(nodes[:2], target(ns, "gpu")), 30),
         "uncordon: reloaded, target label and device plugin back")

    # A spec change: the DaemonSet's template follows.
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--type=merge", "-p",
            json.dumps({"spec": {"devicePlugin": {"container": {"image": "registry.example/op-dp/plugin:2"}}}}))
    t.ok(wait(lambda: [d for d in daemonsets(ns, "gpu")
                       if d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/op-dp/plugin:2"], 30)
         and len(daemonsets(ns, "gpu")) == 1, "spec change: the DaemonSet's image patched in place")
    t.ok(wait(lambda: sorted(p["spec"]["containers"][0]["image"] for p in dp_pods(ns, "gpu")
                             if p.get("status", {}).get("phase") == "Running") ==
              ["registry.example/op-dp/plugin:2"] * 2, 90), "spec change: the pods rolled to the new image",
         [(p["spec"].get("nodeName"), p["spec"]["containers"][0]["image"]) for p in dp_pods(ns, "gpu")])

    # Deletion: the DaemonSet goes at once, the labels with it, then the Module.
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "gpu"), 30), "delete: DaemonSet deleted")
    t.ok(wait(lambda: labelled(nodes, target(ns, "gpu"), False) and labelled(nodes, dp_ready(ns, "gpu"), False), 60),
         "delete: device-plugin-target and .device-plugin-ready removed", [node_labels(n) for n in nodes])
    t.ok(wait(lambda: module(ns, "gpu") is None, 90), "delete: Module gone after the unload")


@case
def version_rollout():
    ns = new_ns("op-dp-ver")
    kubectl("create", "serviceaccount", "op-dp-sa", "-n", ns)
    nodes = add_nodes("op-dp-ver-n", 1, labels=["op-dp/ver=yes"])
    # The user's label; kmm's ordered upgrade sets the worker and schedule labels from it.
    vm = f"kmm.node.kubernetes.io/version-module.{ns}.v"
    kubectl("label", "node", nodes[0], f"{vm}=1")
    img = push_image("op-dp/ver:" + K1, [K1])
    m = module_obj(ns, "v", {"op-dp/ver": "yes"}, mapping(img), version="1")
    m["spec"]["devicePlugin"] = device_plugin()
    apply(m)
    t.ok(wait(lambda: pods_on(ns, "v", nodes), 90), "version 1: device plugin running")
    old = [d["metadata"]["name"] for d in daemonsets(ns, "v")]
    m["spec"]["moduleLoader"]["container"]["version"] = "2"
    apply(m)
    t.ok(wait(lambda: len(daemonsets(ns, "v")) == 2, 30), "version 2: a second DaemonSet while v1 still runs")
    kubectl("label", "node", nodes[0], f"{vm}=2", "--overwrite")
    gone = wait(lambda: [d["metadata"]["name"] for d in daemonsets(ns, "v")] and
                not set(old) & {d["metadata"]["name"] for d in daemonsets(ns, "v")}, 60)
    t.ok(gone and len(daemonsets(ns, "v")) == 1, "version 2: the v1 DaemonSet, scheduling nothing, collected",
         [(d["metadata"]["name"], d["metadata"]["labels"]) for d in daemonsets(ns, "v")])
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "v", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "v") and module(ns, "v") is None, 90), "version: all gone with the Module")


@case
def device_plugin_only():
    ns = new_ns("op-dp-only")
    kubectl("create", "serviceaccount", "op-dp-sa", "-n", ns)
    nodes = add_nodes("op-dp-only-n", 2, labels=["op-dp/only=yes"])
    m = {"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "Module",
         "metadata": {"name": "intree", "namespace": ns},
         "spec": {"selector": {"op-dp/only": "yes"}, "devicePlugin": device_plugin()}}
    apply(m)
    dss = wait(lambda: daemonsets(ns, "intree"), 30) or []
    ps = dss[0]["spec"]["template"]["spec"] if dss else {}
    t.ok(ps.get("nodeSelector") == {"op-dp/only": "yes"}, "devicePlugin only: node selector is the Module's selector",
         ps.get("nodeSelector"))
    t.ok(wait(lambda: pods_on(ns, "intree", nodes), 60), "devicePlugin only: plugin runs without a module to load")
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: dp_status(ns, "intree") == want, 30), "devicePlugin only: status counts",
         dp_status(ns, "intree"))
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "intree", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "intree") and module(ns, "intree") is None, 60)
         and wait(lambda: labelled(nodes, target(ns, "intree"), False), 30), "devicePlugin only: gone with the Module")


def main():
    preflight()
    op = Operator("deviceplugin", "op-dp-system",
                  extra_config=[f"registryCAFile: {os.environ.get('KMM_TESTENV_REGISTRY_TLS_CA', '')}"])
    kubectl("create", "namespace", "op-dp-system", check=False)
    NAMESPACES.append("op-dp-system")
    op.start()
    try:
        t.ok(op.ports() is not None, "operator: started", op.logtext()[-2000:])
        for fn in CASES:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
    finally:
        rc = op.stop()
        t.ok(rc == 0, "operator: SIGTERM exits 0", op.logtext()[-3000:])
        san = [ln for ln in op.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup("op-dp-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
