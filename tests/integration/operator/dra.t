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
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, Suite, Tap, apply, force_cleanup, kj, kubectl,  # noqa: E402
                   module, module_obj, node_labels, preflight, push_image, ready_on, wait)

K1 = "6.1.0-18-amd64"
ROLE = "kmm.node.kubernetes.io/role"
MODNAME = "kmm.node.kubernetes.io/module.name"
MODNS = "kmm.node.kubernetes.io/module.namespace"
KMM_ENV = ["NODE_NAME", "POD_UID", "CDI_ROOT", "KUBELET_REGISTRAR_DIRECTORY_PATH",
           "KUBELET_PLUGINS_DIRECTORY_PATH", "HEALTHCHECK_PORT"]
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns


def mapping(image):
    return [{"regexp": "^.+$", "containerImage": image, "registryTLS": {"insecure": True}}]


def dra_ready(ns, mod):
    return f"kmm.node.kubernetes.io/{ns}.{mod}.dra-ready"


def daemonsets(ns, mod):
    return kj("get", "daemonsets", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}=dra")["items"]


def dra_pods(ns, mod):
    return [p for p in kj("get", "pods", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}=dra")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def dra_status(ns, mod):
    return ((module(ns, mod) or {}).get("status") or {}).get("dra") or {}


def classes(ns, mod):
    """The Module's DeviceClasses by name."""
    items = kj("get", "deviceclasses.resource.k8s.io", "-l", f"{MODNAME}={mod},{MODNS}={ns}")["items"]
    return {c["metadata"]["name"]: c for c in items}


def labelled(nodes, key, present=True):
    return all((key in node_labels(n)) == present for n in nodes)


def pods_on(ns, mod, nodes):
    """Running DRA driver pods on exactly these nodes."""
    got = sorted(p["spec"].get("nodeName") or "" for p in dra_pods(ns, mod)
                 if (p.get("status") or {}).get("phase") == "Running")
    return got == sorted(nodes)


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
    bad = []

    def want(c, what):
        if not c:
            bad.append(what)
    md, spec = ds["metadata"], ds["spec"]
    labels = {MODNAME: mod, ROLE: "dra"}
    want(md.get("generateName") == f"{mod}-dra-" and md["name"].startswith(f"{mod}-dra-"),
         f"name {md['name']} generateName {md.get('generateName')}")
    want(md.get("labels") == labels, f"labels {md.get('labels')}")
    want(spec["selector"].get("matchLabels") == labels, f"selector {spec['selector']}")
    own = md.get("ownerReferences") or [{}]
    want(len(own) == 1 and own[0].get("kind") == "Module" and own[0].get("name") == mod
         and own[0].get("uid") == uid and own[0].get("controller") is True, f"owner {own}")
    ps = spec["template"]["spec"]
    want(spec["template"]["metadata"].get("labels") == labels, f"pod labels {spec['template']['metadata']}")
    want(ps.get("nodeSelector") == node_selector, f"nodeSelector {ps.get('nodeSelector')}")
    want(ps.get("hostNetwork") is True, f"hostNetwork {ps.get('hostNetwork')}")
    want(ps.get("priorityClassName") == "system-node-critical", f"priorityClassName {ps.get('priorityClassName')}")
    want(ps.get("serviceAccountName") == "op-dra-sa", f"serviceAccountName {ps.get('serviceAccountName')}")
    want(ps.get("tolerations") == [{"key": "op-dra/taint", "operator": "Exists", "effect": "NoSchedule"}],
         f"tolerations {ps.get('tolerations')}")
    vols = [(v["name"], v.get("hostPath")) for v in ps.get("volumes") or []]
    want(vols == [("kubelet-plugins", {"path": "/var/lib/kubelet/plugins/", "type": "DirectoryOrCreate"}),
                  ("kubelet-plugins-registry", {"path": "/var/lib/kubelet/plugins_registry/", "type": "Directory"}),
                  ("cdi", {"path": "/var/run/cdi", "type": "DirectoryOrCreate"}),
                  ("dev", {"path": "/dev", "type": ""})], f"volumes {vols}")
    c = (ps.get("containers") or [{}])[0]
    want(c.get("name") == "dra" and c.get("image") == "registry.example/op-dra/driver:1",
         f"container {c.get('name')} {c.get('image')}")
    want((c.get("securityContext") or {}).get("privileged") is True, f"securityContext {c.get('securityContext')}")
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
    ic = (ps.get("initContainers") or [{}])[0]
    want(ic.get("name") == "dra-init" and (ic.get("securityContext") or {}).get("privileged") is True,
         f"init container {ic}")
    return bad


# ---------------------------------------------------------------------------

@case
def with_module_loader():
    ns = new_ns("op-dra-ml")
    kubectl("create", "serviceaccount", "op-dra-sa", "-n", ns)
    nodes = add_nodes("op-dra-ml-n", 3)
    for n in nodes[:2]:
        kubectl("label", "node", n, "op-dra/ml=yes")
    img = push_image("op-dra/ml:" + K1, [K1])
    small, big = "op-dra-ml.example.com", "op-dra-ml-big.example.com"
    m = module_obj(ns, "gpu", {"op-dra/ml": "yes"}, mapping(img))
    m["spec"]["dra"] = dra("op-dra-ml.example.com", [
        {"name": small, "selectors": cel("device.driver == 'op-dra-ml.example.com'")},
        {"name": big, "selectors": cel("device.driver == 'op-dra-ml.example.com'"),
         "config": [{"opaque": {"driver": "op-dra-ml.example.com", "parameters": {"mode": "shared"}}}]}])
    m["spec"]["tolerations"] = [{"key": "op-dra/taint", "operator": "Exists", "effect": "NoSchedule"}]
    apply(m)
    uid = module(ns, "gpu")["metadata"]["uid"]
    t.ok(wait(lambda: ready_on(ns, "gpu", nodes[:2]), 60), "module loaded on both selected nodes")
    dss = wait(lambda: daemonsets(ns, "gpu"), 30) or []
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
    t.ok(wait(lambda: pods_on(ns, "gpu", nodes[:2]), 60),
         "the DaemonSet controller runs a DRA driver pod on each node where the module is loaded",
         [(p["metadata"]["name"], p["spec"].get("nodeName"), p.get("status", {}).get("phase"))
          for p in dra_pods(ns, "gpu")])
    t.ok(wait(lambda: labelled(nodes[:2], dra_ready(ns, "gpu")), 30)
         and labelled(nodes[2:], dra_ready(ns, "gpu"), False),
         ".dra-ready on the nodes whose driver pod is Ready, not elsewhere", [node_labels(n) for n in nodes])
    t.ok(all(not any(k.startswith(f"kmm.node.kubernetes.io/{ns}.gpu.") and k.endswith("-target")
                     for k in node_labels(n)) for n in nodes),
         "no target label for DRA", [node_labels(n) for n in nodes])
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: dra_status(ns, "gpu") == want, 30), "status.dra counts 2/2/2", dra_status(ns, "gpu"))
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
    t.ok(wait(lambda: [d for d in daemonsets(ns, "gpu")
                       if d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/op-dra/driver:2"], 30)
         and len(daemonsets(ns, "gpu")) == 1, "spec change: the DaemonSet's image patched in place")
    t.ok(wait(lambda: sorted(p["spec"]["containers"][0]["image"] for p in dra_pods(ns, "gpu")
                             if p.get("status", {}).get("phase") == "Running") ==
              ["registry.example/op-dra/driver:2"] * 2, 90), "spec change: the pods rolled to the new image",
         [(p["spec"].get("nodeName"), p["spec"]["containers"][0]["image"]) for p in dra_pods(ns, "gpu")])

    # Deletion: the DaemonSet and the DeviceClasses go at once, the labels with them, then the Module.
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "gpu", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "gpu"), 30), "delete: DaemonSet deleted")
    t.ok(wait(lambda: not classes(ns, "gpu"), 30), "delete: DeviceClasses deleted", list(classes(ns, "gpu")))
    t.ok(wait(lambda: labelled(nodes, dra_ready(ns, "gpu"), False), 60), "delete: .dra-ready removed",
         [node_labels(n) for n in nodes])
    t.ok(wait(lambda: module(ns, "gpu") is None, 90), "delete: Module gone after the unload")


@case
def version_rollout():
    ns = new_ns("op-dra-ver")
    kubectl("create", "serviceaccount", "op-dra-sa", "-n", ns)
    nodes = add_nodes("op-dra-ver-n", 1, labels=["op-dra/ver=yes"])
    # The user's label; kmm's ordered upgrade sets the worker and schedule labels from it.
    vm = f"kmm.node.kubernetes.io/version-module.{ns}.v"
    vs = f"beta.kmm.node.kubernetes.io/version-schedule-pod.{ns}.v"
    kubectl("label", "node", nodes[0], f"{vm}=1")
    img = push_image("op-dra/ver:" + K1, [K1])
    m = module_obj(ns, "v", {"op-dra/ver": "yes"}, mapping(img), version="1")
    m["spec"]["dra"] = dra("op-dra-ver.example.com", [{"name": "op-dra-ver.example.com"}])
    apply(m)
    t.ok(wait(lambda: pods_on(ns, "v", nodes), 90), "version 1: DRA driver running")
    dss = daemonsets(ns, "v")
    old = [d["metadata"]["name"] for d in dss]
    t.ok(len(dss) == 1 and dss[0]["metadata"]["labels"].get(vs) == "1"
         and dss[0]["spec"]["template"]["spec"]["nodeSelector"].get(vs) == "1",
         "version 1: the DaemonSet carries and selects the version-schedule-pod label",
         [d["metadata"]["labels"] for d in dss])
    m["spec"]["moduleLoader"]["container"]["version"] = "2"
    apply(m)
    t.ok(wait(lambda: len(daemonsets(ns, "v")) == 2, 30), "version 2: a second DaemonSet while v1 still runs")
    kubectl("label", "node", nodes[0], f"{vm}=2", "--overwrite")
    gone = wait(lambda: [d["metadata"]["name"] for d in daemonsets(ns, "v")] and
                not set(old) & {d["metadata"]["name"] for d in daemonsets(ns, "v")}, 90)
    t.ok(gone and len(daemonsets(ns, "v")) == 1, "version 2: the v1 DaemonSet, scheduling nothing, collected",
         [(d["metadata"]["name"], d["metadata"]["labels"]) for d in daemonsets(ns, "v")])
    t.ok(wait(lambda: pods_on(ns, "v", nodes), 90), "version 2: the v2 driver runs on the node")
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "v", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "v") and not classes(ns, "v") and module(ns, "v") is None, 90),
         "version: DaemonSets, DeviceClass and Module all gone")


@case
def dra_only():
    ns = new_ns("op-dra-only")
    kubectl("create", "serviceaccount", "op-dra-sa", "-n", ns)
    nodes = add_nodes("op-dra-only-n", 2, labels=["op-dra/only=yes"])
    m = {"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "Module",
         "metadata": {"name": "intree", "namespace": ns},
         "spec": {"selector": {"op-dra/only": "yes"},
                  "dra": dra("op-dra-only.example.com", [{"name": "op-dra-only.example.com"}])}}
    apply(m)
    dss = wait(lambda: daemonsets(ns, "intree"), 30) or []
    ps = dss[0]["spec"]["template"]["spec"] if dss else {}
    t.ok(ps.get("nodeSelector") == {"op-dra/only": "yes"}, "dra only: node selector is the Module's selector",
         ps.get("nodeSelector"))
    t.ok(wait(lambda: pods_on(ns, "intree", nodes), 60), "dra only: the driver runs without a module to load")
    t.ok(wait(lambda: labelled(nodes, dra_ready(ns, "intree")), 30), "dra only: .dra-ready on both nodes")
    want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
    t.ok(wait(lambda: dra_status(ns, "intree") == want, 30), "dra only: status counts", dra_status(ns, "intree"))
    t.ok(wait(lambda: list(classes(ns, "intree")) == ["op-dra-only.example.com"], 30), "dra only: DeviceClass created")
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "intree", "--wait=false")
    t.ok(wait(lambda: not daemonsets(ns, "intree") and not classes(ns, "intree") and module(ns, "intree") is None, 60)
         and wait(lambda: labelled(nodes, dra_ready(ns, "intree"), False), 30),
         "dra only: DaemonSet, DeviceClass, labels and Module gone")


def main():
    preflight()
    op = Operator("dra", "op-dra-system",
                  extra_config=[f"registryCAFile: {os.environ.get('KMM_TESTENV_REGISTRY_TLS_CA', '')}"])
    kubectl("create", "namespace", "op-dra-system", check=False)
    NAMESPACES.append("op-dra-system")
    op.start()
    try:
        t.ok(op.ports() is not None, "operator: started", op.logtext()[-2000:])
        t.ok(wait(lambda: [ln for ln in op.logtext().splitlines() if "DRA on" in ln and "1.37" in ln], 10),
             "operator: says at start that DRA is on (the API server is 1.37)", op.logtext()[-2000:])
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
            kubectl("delete", "deviceclasses.resource.k8s.io", "-l", f"{MODNS}={ns}", "--ignore-not-found",
                    check=False)
            force_cleanup(ns, [])
        force_cleanup("op-dra-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
