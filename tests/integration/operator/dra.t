#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's DRA reconciler against the testenv (Kubernetes 1.37, which
serves resource.k8s.io/v1): the driver DaemonSet per Module in upstream's shape,
its pods created by the controller-manager's DaemonSet controller on kwok nodes
(Running and Ready at once), the .dra-ready node labels, status.dra, the
DeviceClasses created with the Module's labels, patched back when edited,
deleted when the Module no longer lists them, a spec change rolled into the
DaemonSet, a new version's DaemonSet replacing the old one, a Module with only a
DRA driver, and everything (DeviceClasses included) gone with the Module. The
version gate on an older API server is the declarative case dra-version-gate;
here the operator says at start that DRA is on. One namespace and node prefix
(op-dra-*) per case."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pluginlib as plugin  # noqa: E402
from oplib import (Suite, Tap, apply, finish, kj, kubectl, module, module_obj, node_labels,  # noqa: E402
                   preflight, push_image, ready_on, run_cases, start_operator, stop_checked, wait)
from pluginlib import MODNAME, labelled, mapping  # noqa: E402

K1 = "6.1.0-18-amd64"
DRA = plugin.Kind("dra", "dra")
MODNS = "kmm.node.kubernetes.io/module.namespace"
KMM_ENV = ["NODE_NAME", "POD_UID", "CDI_ROOT", "KUBELET_REGISTRAR_DIRECTORY_PATH",
           "KUBELET_PLUGINS_DIRECTORY_PATH", "HEALTHCHECK_PORT"]
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case = S.case


def classes(ns, mod):
    """The Module's DeviceClasses by name."""
    items = kj("get", "deviceclasses.resource.k8s.io", "-l", f"{MODNAME}={mod},{MODNS}={ns}")["items"]
    return {c["metadata"]["name"]: c for c in items}


def cel(expr):
    return [{"cel": {"expression": expr}}]


def dra(driver, device_classes, image="registry.example/op-dra/driver:1"):
    return {"driverName": driver, "serviceAccountName": "op-dra-sa",
            "volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}],
            "initContainer": {"image": "registry.example/op-dra/init:1"},
            "container": {"image": image, "env": [{"name": "LOG_LEVEL", "value": "4"}],
                          "volumeMounts": [{"name": "dev", "mountPath": "/dev"}]},
            "deviceClasses": device_classes}


def check_ds_shape(ds, ns, mod, uid, node_selector):
    bad, ps, c = plugin.common_shape(
        ds, DRA.role, ns, mod, uid, node_selector, "registry.example/op-dra/driver:1", "op-dra-sa",
        [{"key": "op-dra/taint", "operator": "Exists", "effect": "NoSchedule"}])

    def want(cond, what):
        if not cond:
            bad.append(what)
    want(ps.get("hostNetwork") is True, f"hostNetwork {ps.get('hostNetwork')}")
    vols = [(v["name"], v.get("hostPath")) for v in ps.get("volumes") or []]
    want(vols == [("kubelet-plugins", {"path": "/var/lib/kubelet/plugins/", "type": "DirectoryOrCreate"}),
                  ("kubelet-plugins-registry", {"path": "/var/lib/kubelet/plugins_registry/", "type": "Directory"}),
                  ("cdi", {"path": "/var/run/cdi", "type": "DirectoryOrCreate"}),
                  ("dev", {"path": "/dev", "type": ""})], f"volumes {vols}")
    env = [e["name"] for e in c.get("env") or []]
    want(env == KMM_ENV + ["LOG_LEVEL"], f"env {env}")
    probe = c.get("livenessProbe") or {}
    want(probe.get("grpc") == {"port": 51515, "service": "liveness"} and probe.get("initialDelaySeconds") == 30
         and probe.get("periodSeconds") == 10 and probe.get("timeoutSeconds") == 5
         and probe.get("failureThreshold") == 3, f"livenessProbe {probe}")
    mounts = [(m["name"], m["mountPath"]) for m in c.get("volumeMounts") or []]
    want(mounts == [("kubelet-plugins", "/var/lib/kubelet/plugins/"),
                    ("kubelet-plugins-registry", "/var/lib/kubelet/plugins_registry/"),
                    ("cdi", "/var/run/cdi"), ("dev", "/dev")], f"mounts {mounts}")
    return bad


# ---------------------------------------------------------------------------

@case
def with_module_loader():
    ns, nodes, sel = plugin.case_env(S, "op-dra-ml", "op-dra-sa", 3, 2)
    small, big = "op-dra-ml.example.com", "op-dra-ml-big.example.com"
    m = module_obj(ns, "gpu", sel, mapping(push_image("op-dra/ml:" + K1, [K1])))
    m["spec"]["dra"] = dra("op-dra-ml.example.com", [
        {"name": small, "selectors": cel("device.driver == 'op-dra-ml.example.com'")},
        {"name": big, "selectors": cel("device.driver == 'op-dra-ml.example.com'"),
         "config": [{"opaque": {"driver": "op-dra-ml.example.com", "parameters": {"mode": "shared"}}}]}])
    m["spec"]["tolerations"] = [{"key": "op-dra/taint", "operator": "Exists", "effect": "NoSchedule"}]
    apply(m)
    uid = module(ns, "gpu")["metadata"]["uid"]
    t.ok(wait(lambda: ready_on(ns, "gpu", nodes[:2]), 60), "module loaded on both selected nodes")
    dss = wait(lambda: DRA.daemonsets(ns, "gpu"), 30) or []
    bad = check_ds_shape(dss[0], ns, "gpu", uid, {f"kmm.node.kubernetes.io/{ns}.gpu.ready": ""}) \
        if dss else ["no DaemonSet"]
    t.ok(len(dss) == 1 and not bad, "one DRA DaemonSet in upstream's shape (name, labels, selector, owner, node "
         "selector on the ready label only, host network, system-node-critical, SA, tolerations, kmm's plugins, "
         "plugins_registry and CDI volumes before the user's, container dra: privileged, kmm's environment before "
         "the user's, gRPC liveness probe on 51515, mounts; init container dra-init)", bad)
    dcs = wait(lambda: len(classes(ns, "gpu")) == 2 and classes(ns, "gpu"), 30) or {}
    t.ok(set(dcs) == {small, big}
         and dcs[small]["spec"].get("selectors") == cel("device.driver == 'op-dra-ml.example.com'")
         and not dcs[small]["spec"].get("config")
         and dcs[big]["spec"].get("config") == [{"opaque": {"driver": "op-dra-ml.example.com",
                                                             "parameters": {"mode": "shared"}}}],
         "both DeviceClasses created (resource.k8s.io/v1) with the module.name and module.namespace labels, "
         "their selectors and config", json.dumps(dcs)[:1500])
    t.ok(wait(lambda: DRA.pods_on(ns, "gpu", nodes[:2]), 60),
         "the DaemonSet controller runs a DRA driver pod on each node where the module is loaded",
         [(p["metadata"]["name"], p["spec"].get("nodeName"), p.get("status", {}).get("phase"))
          for p in DRA.pods(ns, "gpu")])
    t.ok(wait(lambda: labelled(nodes[:2], DRA.label(ns, "gpu", "ready")), 30)
         and labelled(nodes[2:], DRA.label(ns, "gpu", "ready"), False),
         ".dra-ready on the nodes whose driver pod is Ready, not elsewhere", [node_labels(n) for n in nodes])
    t.ok(all(not any(k.startswith(f"kmm.node.kubernetes.io/{ns}.gpu.") and k.endswith("-target")
                     for k in node_labels(n)) for n in nodes),
         "no target label for DRA", [node_labels(n) for n in nodes])
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: DRA.status(ns, "gpu") == want, 30), "status.dra counts 2/2/2", DRA.status(ns, "gpu"))
    st = (module(ns, "gpu") or {}).get("status") or {}
    t.ok("devicePlugin" not in st and (st.get("moduleLoader") or {}).get("availableNumber") == 2,
         "status.devicePlugin absent, status.moduleLoader still written by the Module controller", st)

    # Someone edits a DeviceClass: kmm patches it back.
    kubectl("patch", "deviceclasses.resource.k8s.io", small, "--type=merge", "-p",
            json.dumps({"spec": {"selectors": cel("true")}}))
    t.ok(wait(lambda: (classes(ns, "gpu").get(small) or {}).get("spec", {}).get("selectors") ==
              cel("device.driver == 'op-dra-ml.example.com'"), 30),
         "an edited DeviceClass is patched back to the Module's selectors", classes(ns, "gpu").get(small))

    # The Module drops a class: it is deleted; a spec change rolls into the DaemonSet.
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/spec/dra/deviceClasses/1"},
        {"op": "replace", "path": "/spec/dra/container/image", "value": "registry.example/op-dra/driver:2"}]))
    t.ok(wait(lambda: set(classes(ns, "gpu")) == {small}, 30), "a DeviceClass the Module no longer lists is deleted",
         list(classes(ns, "gpu")))
    DRA.rolled_to(t, ns, "gpu", "registry.example/op-dra/driver:2", 2)

    # Deletion: the DaemonSet and the DeviceClasses go at once, the labels with them, then the Module.
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--wait=false")
    t.ok(wait(lambda: not DRA.daemonsets(ns, "gpu"), 30), "delete: DaemonSet deleted")
    t.ok(wait(lambda: not classes(ns, "gpu"), 30), "delete: DeviceClasses deleted", list(classes(ns, "gpu")))
    t.ok(wait(lambda: labelled(nodes, DRA.label(ns, "gpu", "ready"), False), 60), "delete: .dra-ready removed",
         [node_labels(n) for n in nodes])
    t.ok(wait(lambda: module(ns, "gpu") is None, 90), "delete: Module gone after the unload")


@case
def version_rollout():
    ns, node, v1 = DRA.version_case(t, S, "op-dra-ver", "op-dra-sa",
                                    dra("op-dra-ver.example.com", [{"name": "op-dra-ver.example.com"}]), K1)
    vs = f"beta.kmm.node.kubernetes.io/version-schedule-pod.{ns}.v"
    t.ok(len(v1) == 1 and v1[0]["metadata"]["labels"].get(vs) == "1"
         and v1[0]["spec"]["template"]["spec"]["nodeSelector"].get(vs) == "1",
         "version 1: the DaemonSet carried and selected the version-schedule-pod label",
         [d["metadata"]["labels"] for d in v1])
    t.ok(wait(lambda: DRA.pods_on(ns, "v", [node]), 90), "version 2: the v2 driver runs on the node")
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "v", "--wait=false")
    t.ok(wait(lambda: not DRA.daemonsets(ns, "v") and not classes(ns, "v") and module(ns, "v") is None, 90),
         "version: DaemonSets, DeviceClass and Module all gone")


@case
def dra_only():
    ns, nodes = DRA.only_case(t, S, "op-dra-only", "op-dra-sa",
                              dra("op-dra-only.example.com", [{"name": "op-dra-only.example.com"}]))
    t.ok(wait(lambda: labelled(nodes, DRA.label(ns, "intree", "ready")), 30), "dra only: .dra-ready on both nodes")
    t.ok(wait(lambda: list(classes(ns, "intree")) == ["op-dra-only.example.com"], 30), "dra only: DeviceClass created")
    DRA.deleted(t, ns, "intree", nodes, "dra only: DaemonSet, DeviceClass, labels and Module gone",
                lambda: not classes(ns, "intree"))


def main():
    preflight()
    op = start_operator(t, "dra", "op-dra-system", NAMESPACES)
    try:
        t.ok(wait(lambda: [ln for ln in op.logtext().splitlines() if "DRA on" in ln and "1.37" in ln], 10),
             "operator: says at start that DRA is on (the API server is 1.37)", op.logtext()[-2000:])
        run_cases(t, CASES)
    finally:
        stop_checked(t, op)
        for ns in NAMESPACES:
            kubectl("delete", "deviceclasses.resource.k8s.io", "-l", f"{MODNS}={ns}", "--ignore-not-found",
                    check=False)
    return finish(t, NAMESPACES, NODES, "op-dra-none")


if __name__ == "__main__":
    sys.exit(main())
