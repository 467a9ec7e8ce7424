# SPDX-License-Identifier: Apache-2.0
"""What deviceplugin.t and dra.t share: a Module's driver DaemonSets by role
(device-plugin, dra), their pods, node labels and status, and the part of the
DaemonSet's shape both kinds have (lib/operator/plugin-ds.c)."""

from oplib import apply, kj, kubectl, module, module_obj, node_labels, push_image, wait

ROLE = "kmm.node.kubernetes.io/role"
MODNAME = "kmm.node.kubernetes.io/module.name"


def mapping(image):
    return [{"regexp": "^.+$", "containerImage": image, "registryTLS": {"insecure": True}}]


def labelled(nodes, key, present=True):
    return all((key in node_labels(n)) == present for n in nodes)


def case_env(suite, prefix, sa, count, selected):
    """A case's namespace <prefix> with the driver's ServiceAccount sa, and count nodes
    <prefix>-n-<i>, the first selected of them labelled <prefix>/sel=yes: returns the
    namespace, the nodes and that selector."""
    ns = suite.new_ns(prefix)
    kubectl("create", "serviceaccount", sa, "-n", ns)
    nodes = suite.add_nodes(f"{prefix}-n", count)
    for n in nodes[:selected]:
        kubectl("label", "node", n, f"{prefix}/sel=yes")
    return ns, nodes, {f"{prefix}/sel": "yes"}


class Kind:
    """A driver kind: its role label (device-plugin, dra) and its status key (devicePlugin, dra)."""

    def __init__(self, role, key):
        self.role, self.key = role, key

    def label(self, ns, mod, what):
        """kmm.node.kubernetes.io/<ns>.<mod>.<role>-<what> (ready, target)."""
        return f"kmm.node.kubernetes.io/{ns}.{mod}.{self.role}-{what}"

    def daemonsets(self, ns, mod):
        return kj("get", "daemonsets", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}={self.role}")["items"]

    def pods(self, ns, mod):
        """The driver pods of a Module, those terminating left out."""
        return [p for p in kj("get", "pods", "-n", ns, "-l", f"{MODNAME}={mod},{ROLE}={self.role}")["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def pods_on(self, ns, mod, nodes):
        """Running driver pods on exactly these nodes."""
        got = sorted(p["spec"].get("nodeName") or "" for p in self.pods(ns, mod)
                     if (p.get("status") or {}).get("phase") == "Running")
        return got == sorted(nodes)

    def status(self, ns, mod):
        """status.<key> of a Module, {} when absent."""
        return ((module(ns, mod) or {}).get("status") or {}).get(self.key) or {}

    def rolled_to(self, t, ns, mod, image, count):
        """After a spec change: the DaemonSet's image patched in place, count pods rolled to it."""
        def ds_images():
            return [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in self.daemonsets(ns, mod)]

        def running():
            return sorted(p["spec"]["containers"][0]["image"] for p in self.pods(ns, mod)
                          if p.get("status", {}).get("phase") == "Running")
        t.ok(wait(lambda: ds_images() == [image], 30), "spec change: the DaemonSet's image patched in place",
             ds_images())
        t.ok(wait(lambda: running() == [image] * count, 90), "spec change: the pods rolled to the new image",
             running())

    def version_case(self, t, suite, prefix, sa, spec, kernel):
        """A Module "v" of version 1 with this driver (spec) on one node moves to version 2
        through the node's version-module label: a second DaemonSet while v1 runs, the v1
        DaemonSet collected once it schedules nothing. Returns the namespace, the node and
        the v1 DaemonSet as it was."""
        ns, (node,), sel = case_env(suite, prefix, sa, 1, 1)
        # The user's label; kmm's ordered upgrade sets the worker and schedule labels from it.
        vm = f"kmm.node.kubernetes.io/version-module.{ns}.v"
        kubectl("label", "node", node, f"{vm}=1")
        m = module_obj(ns, "v", sel, mapping(push_image(f"{prefix}/ver:{kernel}", [kernel])), version="1")
        m["spec"][self.key] = spec
        apply(m)
        t.ok(wait(lambda: self.pods_on(ns, "v", [node]), 90), f"version 1: {self.role} pod running")
        v1 = self.daemonsets(ns, "v")

        def names():
            return {d["metadata"]["name"] for d in self.daemonsets(ns, "v")}
        m["spec"]["moduleLoader"]["container"]["version"] = "2"
        apply(m)
        t.ok(wait(lambda: len(names()) == 2, 30), "version 2: a second DaemonSet while v1 still runs")
        kubectl("label", "node", node, f"{vm}=2", "--overwrite")
        old = {d["metadata"]["name"] for d in v1}
        gone = wait(lambda: names() and not old & names(), 90)
        t.ok(gone and len(names()) == 1, "version 2: the v1 DaemonSet, scheduling nothing, collected",
             [(d["metadata"]["name"], d["metadata"]["labels"]) for d in self.daemonsets(ns, "v")])
        return ns, node, v1

    def only_case(self, t, suite, prefix, sa, spec):
        """A Module "intree" with only this driver (an in-tree driver) on two nodes: its pods
        select the Module's selector and run without a module to load; the status counts
        them. Returns the namespace and the nodes."""
        ns, nodes, sel = case_env(suite, prefix, sa, 2, 2)
        apply({"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "Module",
               "metadata": {"name": "intree", "namespace": ns},
               "spec": {"selector": sel, self.key: spec}})
        dss = wait(lambda: self.daemonsets(ns, "intree"), 30) or []
        ps = dss[0]["spec"]["template"]["spec"] if dss else {}
        t.ok(ps.get("nodeSelector") == sel, f"{self.key} only: node selector is the Module's selector",
             ps.get("nodeSelector"))
        t.ok(wait(lambda: self.pods_on(ns, "intree", nodes), 60),
             f"{self.key} only: the driver runs without a module to load")
        want = {"nodesMatchingSelectorNumber": 2, "desiredNumber": 2, "availableNumber": 2}
        t.ok(wait(lambda: self.status(ns, "intree") == want, 30), f"{self.key} only: status counts",
             self.status(ns, "intree"))
        return ns, nodes

    def deleted(self, t, ns, mod, nodes, what, also=lambda: True):
        """The Module deleted: its DaemonSets go, its node labels (ready, and target for a
        kind with one) with them, then the Module; also() is what else must be gone."""
        kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, mod, "--wait=false")
        labels = [self.label(ns, mod, w) for w in ("ready", "target")]
        t.ok(wait(lambda: not self.daemonsets(ns, mod) and module(ns, mod) is None and also(), 90)
             and wait(lambda: all(labelled(nodes, k, False) for k in labels), 30), what)


def common_shape(ds, role, ns, mod, uid, node_selector, image, sa, tolerations, version=None):
    """What is wrong with the parts of a driver DaemonSet both kinds share (a list of
    findings), with its pod spec and main container for the kind's own checks."""
    bad = []

    def want(c, what):
        if not c:
            bad.append(what)
    md, spec = ds["metadata"], ds["spec"]
    labels = {MODNAME: mod, ROLE: role}
    if version:
        labels[f"beta.kmm.node.kubernetes.io/version-schedule-pod.{ns}.{mod}"] = version
    want(md.get("generateName") == f"{mod}-{role}-" and md["name"].startswith(f"{mod}-{role}-"),
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
    want(ps.get("serviceAccountName") == sa, f"serviceAccountName {ps.get('serviceAccountName')}")
    want(ps.get("tolerations") == tolerations, f"tolerations {ps.get('tolerations')}")
    c = (ps.get("containers") or [{}])[0]
    want(c.get("name") == role and c.get("image") == image, f"container {c.get('name')} {c.get('image')}")
    want((c.get("securityContext") or {}).get("privileged") is True, f"securityContext {c.get('securityContext')}")
    ic = (ps.get("initContainers") or [{}])[0]
    want(ic.get("name") == f"{role}-init" and (ic.get("securityContext") or {}).get("privileged") is True,
         f"init container {ic}")
    return bad, ps, c
