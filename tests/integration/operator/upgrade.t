#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's ordered upgrade (reference §3.10) against the testenv: a
Module with a version and a device plugin on 3 kwok nodes, moved from v1 to v2
one node at a time with the user's version-module label. At every step: the
node's NMC entry (spec and status), its worker pods, its labels (.ready,
.version.ready, version-worker-pod, version-schedule-pod), the device plugin
DaemonSets of both versions and their pods; the nodes not moved yet keep v1
loaded, with their v1 device plugin; on the node that moves, the order device
plugin out -> unload v1 -> load v2 -> device plugin in, read from one merged
stream of pod and node watch events ordered by resourceVersion (etcd's
revision, shared by all kinds); the ModuleUnloaded and ModuleLoaded Events.
Then the label taken off a node unloads the Module there, device plugin first.
Worker pods complete at once on kwok nodes; device plugin pods are created by
the controller-manager's DaemonSet controller (Running and Ready at once)."""

import calendar
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Suite, Tap, apply, finish, kj, kubectl, module, module_obj,  # noqa: E402
                   nmc, node_labels, preflight, push_image, run_cases, start_operator,
                   stop_checked, wait)

K1 = "6.1.0-18-amd64"
NS = "op-up"
MOD = "gpu"
MODNAME = "kmm.node.kubernetes.io/module.name"
ROLE = "kmm.node.kubernetes.io/role"
M = f"kmm.node.kubernetes.io/version-module.{NS}.{MOD}"
W = f"beta.kmm.node.kubernetes.io/version-worker-pod.{NS}.{MOD}"
S = f"beta.kmm.node.kubernetes.io/version-schedule-pod.{NS}.{MOD}"
READY = f"kmm.node.kubernetes.io/{NS}.{MOD}.ready"
VREADY = f"kmm.node.kubernetes.io/{NS}.{MOD}.version.ready"
ACTION = "kmm.node.kubernetes.io/worker-action"
t = Tap()
SUITE = Suite(K1)
NODES, NAMESPACES = SUITE.nodes, SUITE.namespaces


class Watch:
    """Every watch event of one kind (kubectl get -w), kept with its
    resourceVersion so that streams of several kinds merge in etcd order."""

    def __init__(self, *args):
        self.events = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(["kubectl", "get", *args, "-w", "-o", "json",
                                      "--output-watch-events"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        dec = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while True:
                s = buf.lstrip()
                try:
                    ev, end = dec.raw_decode(s)
                except ValueError:
                    break
                buf = s[end:]
                o = ev.get("object") or {}
                rv = int(o.get("metadata", {}).get("resourceVersion") or 0)
                with self.lock:
                    self.events.append((rv, ev.get("type"), o))

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def mapping(image):
    return [{"regexp": "^.+$", "containerImage": image, "registryTLS": {"insecure": True}}]


def the_module(version, image, plugin):
    m = module_obj(NS, MOD, {"op-up/sel": "yes"}, mapping(image), version=version)
    m["spec"]["devicePlugin"] = {"serviceAccountName": "op-up-sa", "container": {"image": plugin}}
    return m


def daemonsets():
    return kj("get", "daemonsets", "-n", NS, "-l", f"{MODNAME}={MOD},{ROLE}=device-plugin")["items"]


def ds_versions():
    return sorted(d["metadata"]["labels"].get(S, "") for d in daemonsets())


def dp_pods_on(node):
    """(version, phase) of the live device plugin pods on node."""
    pods = kj("get", "pods", "-n", NS, "-l", f"{MODNAME}={MOD},{ROLE}=device-plugin",
              "--field-selector", f"spec.nodeName={node}")["items"]
    return sorted((p["metadata"]["labels"].get(S, ""), (p.get("status") or {}).get("phase"))
                  for p in pods if not p["metadata"].get("deletionTimestamp"))


def entry(node, part):
    for e in ((nmc(node) or {}).get(part) or {}).get("modules") or []:
        if e.get("namespace") == NS and e.get("name") == MOD:
            return e
    return None


def node_state(node, images):
    """What a node runs, as one comparable tuple; images: version -> image."""
    lab = node_labels(node)
    spec, st = entry(node, "spec"), entry(node, "status")

    def ver(e):
        if not e:
            return None
        img = (e.get("config") or {}).get("containerImage")
        return e.get("version") if images.get(e.get("version")) == img else f"?{img}"
    return {"M": lab.get(M), "W": lab.get(W), "S": lab.get(S), "ready": READY in lab,
            "version.ready": lab.get(VREADY), "spec": ver(spec), "status": ver(st),
            "plugin": dp_pods_on(node)}


def on_version(v, plugin=True):
    return {"M": v, "W": v, "S": v, "ready": True, "version.ready": v, "spec": v, "status": v,
            "plugin": [(v, "Running")] if plugin else []}


def states_are(want, images, timeout=90):
    got = {}

    def check():
        got.clear()
        got.update({n: node_state(n, images) for n in want})
        return got == want
    ok = wait(check, timeout, interval=0.5)
    return ok, {n: got.get(n) for n in want if got.get(n) != want[n]}


def node_events(reason, node, since):
    """kmm's Events about node with this reason, created at or after since (epoch s)."""
    items = kj("get", "events", "-n", "default", "--field-selector",
               f"involvedObject.name={node},reason={reason}")["items"]
    out = []
    for e in items:
        ts = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
        when = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
        if when >= since - 1 and (e.get("metadata", {}).get("annotations") or {}).get("module") == f"{NS}/{MOD}":
            out.append(e)
    return out


def first(events, after_rv, pred):
    for rv, typ, o in events:
        if rv > after_rv and pred(typ, o):
            return rv
    return None


def step_order(pods, nodes_w, node, after_rv, old, new):
    """resourceVersions of the steps on node after after_rv, in the order they must happen."""
    evs = sorted(pods.snapshot() + nodes_w.snapshot(), key=lambda e: e[0])

    def on_node(o):
        return (o.get("spec") or {}).get("nodeName") == node

    def is_node(o):
        return o.get("kind") == "Node" and o["metadata"]["name"] == node

    def labels(o):
        return o["metadata"].get("labels") or {}

    def dp(o, v):
        return labels(o).get(ROLE) == "device-plugin" and labels(o).get(S) == v and on_node(o)

    def worker(o, action, image):
        cfg = (o["metadata"].get("annotations") or {}).get("kmm.node.kubernetes.io/worker-config", "")
        return labels(o).get(ACTION) == action and on_node(o) and image in cfg

    steps = [
        ("version-schedule-pod label removed",
         lambda typ, o: is_node(o) and S not in labels(o)),
        (f"device plugin pod of {old} deleted",
         lambda typ, o: typ == "DELETED" and dp(o, old)),
        ("version-worker-pod label removed",
         lambda typ, o: is_node(o) and W not in labels(o)),
        (f"unloader of {old} created",
         lambda typ, o: typ == "ADDED" and worker(o, "Unload", f":{old}-")),
        (f"version-worker-pod label set to {new}",
         lambda typ, o: is_node(o) and labels(o).get(W) == new),
        (f"loader of {new} created",
         lambda typ, o: typ == "ADDED" and worker(o, "Load", f":{new}-")),
        (f".ready and .version.ready={new} on the node",
         lambda typ, o: is_node(o) and READY in labels(o) and labels(o).get(VREADY) == new),
        # a DaemonSet's pod is bound to its node after its creation
        (f"device plugin pod of {new} on the node",
         lambda typ, o: typ != "DELETED" and dp(o, new)),
    ]
    out, rv = [], after_rv
    for name, pred in steps:
        found = first(evs, rv, pred)
        out.append((name, found))
        if found is None:
            break
        rv = found
    # S follows W at once, before or after the loader starts, and before the plugin
    w_new = dict(out).get(f"version-worker-pod label set to {new}")
    s_new = first(evs, w_new, lambda typ, o: is_node(o) and labels(o).get(S) == new) if w_new else None
    out.append((f"version-schedule-pod label set to {new}, after W and before the plugin",
                s_new if s_new and s_new < (dict(out).get(f"device plugin pod of {new} on the node") or 0)
                else None))
    return out


def worker_pods_since(pods, after_rv, node=None):
    return [(o["spec"].get("nodeName"), o["metadata"]["labels"].get(ACTION),
             (o["metadata"].get("annotations") or {}).get("kmm.node.kubernetes.io/worker-config", ""))
            for rv, typ, o in pods.snapshot()
            if rv > after_rv and typ == "ADDED" and ACTION in (o["metadata"].get("labels") or {})
            and (node is None or o["spec"].get("nodeName") == node)]


def current_rv():
    """A resourceVersion no older than every write so far."""
    lst = json.loads(kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/configmaps?limit=1"))
    return int(lst["metadata"]["resourceVersion"])


def rollout():
    NAMESPACES.append(NS)
    kubectl("create", "namespace", NS)
    kubectl("create", "serviceaccount", "op-up-sa", "-n", NS)
    nodes = SUITE.add_nodes("op-up-n", 3, labels=["op-up/sel=yes"])
    images = {"1": push_image(f"op-up/gpu:1-{K1}", [K1]), "2": push_image(f"op-up/gpu:2-{K1}", [K1])}
    pods = Watch("pods", "-n", NS)
    nodes_w = Watch("nodes")
    try:
        time.sleep(2)  # kubectl establishes its watches; nothing tells us when
        rollout_steps(nodes, images, pods, nodes_w)
    finally:
        pods.close()
        nodes_w.close()


def rollout_steps(nodes, images, pods, nodes_w):
    # v1 everywhere: the user's label on each node, then the Module.
    for n in nodes:
        kubectl("label", "node", n, f"{M}=1")
    apply(the_module("1", images["1"], "registry.example/op-up/plugin:1"))
    ok, bad = states_are({n: on_version("1") for n in nodes}, images)
    t.ok(ok, "v1: W and S follow the version-module label on every node; NMC entries v1 loaded, "
         ".ready and .version.ready=1, a v1 device plugin pod on each node", bad)
    t.ok(ds_versions() == ["1"], "v1: one device plugin DaemonSet, of version 1", ds_versions())

    # The Module moves to v2: nothing moves on the nodes.
    mark = current_rv()
    apply(the_module("2", images["2"], "registry.example/op-up/plugin:2"))
    t.ok(wait(lambda: ds_versions() == ["1", "2"], 30),
         "Module at v2: a v2 DaemonSet next to the v1 one (still running everywhere)", ds_versions())
    v2 = [d for d in daemonsets() if d["metadata"]["labels"].get(S) == "2"]
    sel = v2[0]["spec"]["template"]["spec"].get("nodeSelector") if v2 else None
    t.ok(sel == {READY: "", f"kmm.node.kubernetes.io/{NS}.{MOD}.device-plugin-target": "", S: "2"},
         "the v2 DaemonSet selects .ready, .device-plugin-target and version-schedule-pod=2", sel)
    time.sleep(3)  # give a wrong unload time to happen
    ok, bad = states_are({n: on_version("1") for n in nodes}, images, timeout=5)
    t.ok(ok, "Module at v2: every node keeps v1 loaded (NMC spec and status), its labels and its "
         "v1 device plugin until its own label moves", bad)
    t.ok(worker_pods_since(pods, mark) == [], "Module at v2: no worker pod anywhere",
         worker_pods_since(pods, mark))

    # One node at a time.
    for i, node in enumerate(nodes):
        mark = current_rv()
        since = time.time()
        kubectl("label", "node", node, f"{M}=2", "--overwrite")
        want = {n: on_version("2" if j <= i else "1") for j, n in enumerate(nodes)}
        ok, bad = states_are(want, images)
        t.ok(ok, f"node {i + 1} moved: it runs v2 (W, S, NMC spec and status, .version.ready=2, v2 "
             f"device plugin); the {i} before it v2, the {len(nodes) - i - 1} after it still v1", bad)
        order = step_order(pods, nodes_w, node, mark, "1", "2")
        t.ok(all(rv is not None for _, rv in order) and len(order) == 9,
             f"node {i + 1}: device plugin v1 out, unload v1, load v2, device plugin v2 in, in that order",
             "\n".join(f"{name}: {rv}" for name, rv in order))
        mine = worker_pods_since(pods, mark, node)
        t.ok(len(mine) == 2 and mine[0][1] == "Unload" and images["1"] in mine[0][2]
             and mine[1][1] == "Load" and images["2"] in mine[1][2],
             f"node {i + 1}: one unloader (v1's config) then one loader (v2's), nothing else", mine)
        others = [p for p in worker_pods_since(pods, mark) if p[0] != node]
        t.ok(others == [], f"node {i + 1}: no worker pod on the other nodes", others)
        t.ok(wait(lambda: node_events("ModuleUnloaded", node, since), 20)
             and wait(lambda: node_events("ModuleLoaded", node, since), 20),
             f"node {i + 1}: ModuleUnloaded and ModuleLoaded Events on the Node")

    t.ok(wait(lambda: ds_versions() == ["2"], 60),
         "all nodes on v2: the v1 DaemonSet, scheduling nothing, is collected", ds_versions())
    ml = wait(lambda: (((module(NS, MOD) or {}).get("status") or {}).get("moduleLoader") or {})
              .get("availableNumber") == 3 and module(NS, MOD)["status"]["moduleLoader"], 30)
    t.ok(ml and ml.get("desiredNumber") == 3, "Module status: 3 of 3 available", ml)

    # The label taken off a node: its device plugin leaves, then the module is unloaded.
    node = nodes[0]
    mark = current_rv()
    kubectl("label", "node", node, f"{M}-")
    gone = {"M": None, "W": None, "S": None, "ready": False, "version.ready": None, "spec": None,
            "status": None, "plugin": []}
    ok, bad = states_are({node: gone, nodes[1]: on_version("2"), nodes[2]: on_version("2")}, images)
    t.ok(ok, "label removed: S and W go, the module is unloaded there (NMC entry, .ready, "
         ".version.ready gone), no device plugin; the other nodes keep v2", bad)
    order = step_order(pods, nodes_w, node, mark, "2", "none")[:4]
    t.ok(all(rv is not None for _, rv in order),
         "label removed: device plugin out before the unloader", "\n".join(f"{n}: {rv}" for n, rv in order))

    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", NS, MOD, "--wait=false")
    t.ok(wait(lambda: module(NS, MOD) is None and not daemonsets(), 90)
         and all(READY not in node_labels(n) and VREADY not in node_labels(n) for n in nodes),
         "Module deleted: unloaded everywhere, DaemonSets and ready labels gone")


def main():
    preflight()
    op = start_operator(t, "upgrade", "op-up-system", NAMESPACES)
    try:
        run_cases(t, [rollout])
    finally:
        stop_checked(t, op)
    return finish(t, NAMESPACES, NODES, "op-up-none")


if __name__ == "__main__":
    sys.exit(main())
