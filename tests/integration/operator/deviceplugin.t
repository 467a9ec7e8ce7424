#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's device plugin against the testenv: the DaemonSet per Module
in upstream's shape, its pods created by the controller-manager's DaemonSet
controller on kwok nodes (Running and Ready at once, tests/env/kwok/stages.yaml),
the device-plugin-target and .device-plugin-ready node labels, status.devicePlugin
and the DEVICE-PLUGINS column, a cordon (and the Module's deletion) taking the
plugin pod off the node before the unloader starts, a spec change rolled into
the DaemonSet, a new version's DaemonSet replacing the old one, a Module with
only a device plugin, and everything gone with the
Module. One namespace and node prefix (op-dp-*) per case."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pluginlib as plugin  # noqa: E402
from oplib import (PodWatch, Suite, Tap, apply, finish, kubectl, module, module_obj,  # noqa: E402
                   node_labels, preflight, push_image, ready_on, run_cases, start_operator, stop_checked,
                   testenv, wait)
from pluginlib import labelled, mapping  # noqa: E402

K1 = "6.1.0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
DP = plugin.Kind("device-plugin", "devicePlugin")
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case = S.case


def check_ds_shape(ds, ns, mod, uid, node_selector, version=None):
    bad, ps, c = plugin.common_shape(
        ds, DP.role, ns, mod, uid, node_selector, "registry.example/op-dp/plugin:1", "op-dp-sa",
        [{"key": "op-dp/taint", "operator": "Exists", "effect": "NoSchedule"}], version)
    vols = {v["name"]: v for v in ps.get("volumes") or []}
    if (vols.get("kubelet-device-plugins") or {}).get("hostPath") != \
            {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"} or "dev" not in vols:
        bad.append(f"volumes {ps.get('volumes')}")
    mounts = [(m["name"], m["mountPath"]) for m in c.get("volumeMounts") or []]
    if mounts != [("kubelet-device-plugins", "/var/lib/kubelet/device-plugins"), ("dev", "/dev")]:
        bad.append(f"mounts {mounts}")
    return bad


def device_plugin(image="registry.example/op-dp/plugin:1"):
    return {"serviceAccountName": "op-dp-sa",
            "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}],
            "initContainer": {"image": "registry.example/op-dp/init:1"},
            "container": {"image": image, "volumeMounts": [{"name": "dev", "mountPath": "/dev"}]}}


def plugin_out_before_unload(watch, node):
    """From one watch on a Module's pods (its events in etcd order): the device plugin pod
    on node was deleted (gone, not only terminating) before the unloader there was created.
    None while either is still to come."""
    def on(o, key, value):
        return (o.get("spec") or {}).get("nodeName") == node and \
            (o["metadata"].get("labels") or {}).get(key) == value
    evs = list(watch.events)
    gone = next((i for i, (typ, o) in enumerate(evs)
                 if typ == "DELETED" and on(o, "kmm.node.kubernetes.io/role", DP.role)), None)
    unload = next((i for i, (typ, o) in enumerate(evs)
                   if typ == "ADDED" and on(o, "kmm.node.kubernetes.io/worker-action", "Unload")), None)
    return None if gone is None or unload is None else gone < unload


def column(ns, mod):
    out = kubectl("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, mod)
    head, row = out.splitlines()[:2]
    cols = head.split()
    return dict(zip(cols, row.split())).get("DEVICE-PLUGINS")


# ---------------------------------------------------------------------------

@case
def with_module_loader():
    ns, nodes, sel = plugin.case_env(S, "op-dp-ml", "op-dp-sa", 3, 2)
    m = module_obj(ns, "gpu", sel, mapping(push_image("op-dp/ml:" + K1, [K1])))
    m["spec"]["devicePlugin"] = device_plugin()
    m["spec"]["tolerations"] = [{"key": "op-dp/taint", "operator": "Exists", "effect": "NoSchedule"}]
    apply(m)
    uid = module(ns, "gpu")["metadata"]["uid"]
    tl, rl = DP.label(ns, "gpu", "target"), DP.label(ns, "gpu", "ready")
    t.ok(wait(lambda: ready_on(ns, "gpu", nodes[:2]), 60), "module loaded on both selected nodes")
    dss = wait(lambda: DP.daemonsets(ns, "gpu"), 30) or []
    bad = check_ds_shape(dss[0], ns, "gpu", uid, {f"kmm.node.kubernetes.io/{ns}.gpu.ready": "",
                                                   tl: ""}) if dss else ["no DaemonSet"]
    t.ok(len(dss) == 1 and not bad, "one DaemonSet in upstream's shape (name, labels, selector, owner, node "
         "selector on ready + device-plugin-target, system-node-critical, SA, tolerations, volumes, "
         "privileged container with the device-plugins mount, init container)", bad)
    t.ok(wait(lambda: labelled(nodes[:2], tl), 30) and labelled(nodes[2:], tl, False),
         "device-plugin-target on the selected schedulable nodes only")
    t.ok(wait(lambda: DP.pods_on(ns, "gpu", nodes[:2]), 60),
         "the DaemonSet controller runs a device plugin pod on each selected node",
         [(p["metadata"]["name"], p["spec"].get("nodeName"), p.get("status", {}).get("phase"))
          for p in DP.pods(ns, "gpu")])
    t.ok(wait(lambda: labelled(nodes[:2], rl), 30) and labelled(nodes[2:], rl, False),
         ".device-plugin-ready on the nodes whose plugin pod is Ready", [node_labels(n) for n in nodes])
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: DP.status(ns, "gpu") == want, 30), "status.devicePlugin counts 2/2/2", DP.status(ns, "gpu"))
    ml = ((module(ns, "gpu") or {}).get("status") or {}).get("moduleLoader") or {}
    t.ok(ml.get("availableNumber") == 2, "status.moduleLoader still written by the Module controller", ml)
    t.ok(wait(lambda: column(ns, "gpu") == "2", 10), "DEVICE-PLUGINS column shows 2",
         kubectl("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu"))

    # A cordon: the target label goes, the plugin pod leaves, then the module is unloaded.
    watch = PodWatch(ns, "kmm.node.kubernetes.io/module.name")
    testenv("nodes", "cordon", nodes[0])
    t.ok(wait(lambda: labelled(nodes[:1], tl, False), 30), "cordon: device-plugin-target removed")
    t.ok(wait(lambda: DP.pods_on(ns, "gpu", nodes[1:2]), 60) and wait(lambda: labelled(nodes[:1], rl, False), 30),
         "cordon: the device plugin pod left the node, .device-plugin-ready removed")
    t.ok(wait(lambda: labelled(nodes[:1], f"kmm.node.kubernetes.io/{ns}.gpu.ready", False), 60),
         "cordon: the module was unloaded")
    t.ok(wait(lambda: plugin_out_before_unload(watch, nodes[0]) is not None, 30) and
         plugin_out_before_unload(watch, nodes[0]),
         "cordon: the device plugin pod was gone before the unloader was created",
         [(typ, o["metadata"]["name"], o["spec"].get("nodeName")) for typ, o in watch.events])
    watch.close()
    t.ok(wait(lambda: DP.status(ns, "gpu").get("desiredNumber") == 1, 30), "cordon: desiredNumber 1",
         DP.status(ns, "gpu"))
    testenv("nodes", "uncordon", nodes[0])
    t.ok(wait(lambda: DP.pods_on(ns, "gpu", nodes[:2]), 90) and wait(lambda: labelled(nodes[:2], tl), 30),
         "uncordon: reloaded, target label and device plugin back")

    # A spec change: the DaemonSet's template follows.
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--type=merge", "-p",
            json.dumps({"spec": {"devicePlugin": {"container": {"image": "registry.example/op-dp/plugin:2"}}}}))
    DP.rolled_to(t, ns, "gpu", "registry.example/op-dp/plugin:2", 2)

    # Deletion: the DaemonSet goes at once, the labels with it, the plugin pods, then the
    # unloaders, then the Module.
    watch = PodWatch(ns, "kmm.node.kubernetes.io/module.name")
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--wait=false")
    t.ok(wait(lambda: not DP.daemonsets(ns, "gpu"), 30), "delete: DaemonSet deleted")
    t.ok(wait(lambda: labelled(nodes, tl, False) and labelled(nodes, rl, False), 60),
         "delete: device-plugin-target and .device-plugin-ready removed", [node_labels(n) for n in nodes])
    t.ok(wait(lambda: module(ns, "gpu") is None, 90), "delete: Module gone after the unload")
    t.ok(all(plugin_out_before_unload(watch, n) for n in nodes[:2]),
         "delete: on each node the device plugin pod was gone before the unloader was created",
         [(typ, o["metadata"]["name"], o["spec"].get("nodeName")) for typ, o in watch.events])
    watch.close()


@case
def version_rollout():
    ns, _, _ = DP.version_case(t, S, "op-dp-ver", "op-dp-sa", device_plugin(), K1)
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "v", "--wait=false")
    t.ok(wait(lambda: not DP.daemonsets(ns, "v") and module(ns, "v") is None, 90), "version: all gone with the Module")


@case
def device_plugin_only():
    ns, nodes = DP.only_case(t, S, "op-dp-only", "op-dp-sa", device_plugin())
    DP.deleted(t, ns, "intree", nodes, "devicePlugin only: gone with the Module")


def main():
    preflight()
    op = start_operator(t, "deviceplugin", "op-dp-system", NAMESPACES)
    try:
        run_cases(t, CASES)
    finally:
        stop_checked(t, op)
    return finish(t, NAMESPACES, NODES, "op-dp-none")


if __name__ == "__main__":
    sys.exit(main())
