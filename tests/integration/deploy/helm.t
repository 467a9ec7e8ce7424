#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The Helm chart deploy/helm/kmm with the pinned helm (built from Go modules
by the testenv) on the testenv: `helm template` gives the same objects as
`kubectl kustomize deploy/` (kinds, namespaces, names; the same RBAC rules,
webhooks and CRD schemas), values move the namespace, images,
controller_config.yaml, tolerations and resources, cert-manager swaps the
certificate objects; `helm install`, `helm upgrade` to a new tag (every
object kept, the Deployments rolled to the new images, CRDs updated in
place) and `helm uninstall` leaving nothing of kmm."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tempfile  # noqa: E402
from deploylib import (CHART, DEPLOY, INSTALL, NS, Tap, Webhook, ca_bundles, docs,  # noqa: E402
                       free_port, helm, ids, kj, kubectl, leftovers, missing_objects, preflight,
                       run_suite, sa_kubeconfig, secret_data, wait)

t = Tap()
REL = f"kmm-test-{os.getpid()}"
TMP = tempfile.mkdtemp(prefix="kmm-deploy-helm-")
had_crds = False
installed = False


def strip(o):
    """What both tools must agree on: the object without labels/annotations the
    tools add and without the comments' traces."""
    o = json.loads(json.dumps(o))
    o["metadata"].pop("labels", None)
    o["metadata"].pop("annotations", None)
    for path in (("spec", "template", "metadata"),):
        cur = o
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        if isinstance(cur, dict):
            cur.pop("labels", None)
            cur.pop("annotations", None)
    return o


def by_id(items):
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in items}


def deployment(items, name):
    return by_id(items)[("Deployment", NS, name)]


def main():
    global had_crds, installed
    preflight(need_helm=True)
    had_crds = kj("get", "crd", "modules.kmm.sigs.x-k8s.io", "--ignore-not-found",
                  check=False) is not None
    k = by_id(docs(kubectl("kustomize", DEPLOY)))
    h_items = docs(helm("template", REL, CHART))
    h = by_id(h_items)
    t.ok(ids(h_items) == INSTALL, "helm template gives the kinds and names of kubectl kustomize "
         "deploy/", sorted(set(h) ^ set(k)))
    same = [x for x in k if x[0] not in ("Deployment", "ConfigMap") and x in h and
            strip(k[x]) != strip(h[x])]
    t.ok(not same, "RBAC rules, Services, webhooks and CRDs are the same objects in both", same)
    kd, hd = deployment(k.values(), "kmm-operator-controller"), \
        deployment(h.values(), "kmm-operator-controller")
    kc, hc = kd["spec"]["template"]["spec"]["containers"][0], \
        hd["spec"]["template"]["spec"]["containers"][0]
    drop = ("imagePullPolicy",)
    t.ok({a: b for a, b in kc.items() if a not in drop} ==
         {a: b for a, b in hc.items() if a not in drop},
         "the operator container is the same (image, env, probes, resources)", (kc, hc))
    kw, hw = deployment(k.values(), "kmm-operator-webhook-server"), \
        deployment(h.values(), "kmm-operator-webhook-server")
    kwc, hwc = kw["spec"]["template"]["spec"]["containers"][0], \
        hw["spec"]["template"]["spec"]["containers"][0]
    t.ok(kwc["args"] == hwc["args"][:len(kwc["args"])] and
         kw["spec"]["template"]["spec"]["volumes"] == hw["spec"]["template"]["spec"]["volumes"],
         "the webhook container has the same flags (helm adds the certificate lifetimes)",
         (kwc["args"], hwc["args"]))

    # values
    v = docs(helm("template", REL, CHART, "--set", "namespace.name=kmm-x",
                  "--set", "images.registry=registry.example/kmm", "--set", "images.tag=v9.9.9",
                  "--set", "config.imageCheck=pullPod", "--set", "config.job.builder=kaniko",
                  "--set", "config.metrics.bindAddress=0.0.0.0:9443",
                  "--set-json", 'operator.tolerations=[{"key":"k","operator":"Exists"}]',
                  "--set", "operator.resources.limits.memory=256Mi"))
    nss = {o["metadata"].get("namespace") for o in v} - {None}
    subj = [s for o in v for s in o.get("subjects", [])]
    hooks = [h_["clientConfig"]["service"]["namespace"]
             for o in v if o["kind"] == "ValidatingWebhookConfiguration" for h_ in o["webhooks"]]
    conv = [o["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["namespace"]
            for o in v if o["kind"] == "CustomResourceDefinition" and
            o["spec"].get("conversion", {}).get("strategy") == "Webhook"]
    t.ok(nss == {"kmm-x"} and {s["namespace"] for s in subj} == {"kmm-x"} and
         set(hooks) == {"kmm-x"} and conv == ["kmm-x"] and
         ("Namespace", "", "kmm-x") in by_id(v),
         "namespace.name moves every object, binding subject, webhook and conversion service",
         (nss, hooks, conv))
    vd = deployment([dict(o, metadata=dict(o["metadata"], namespace=NS))
                     if o["kind"] == "Deployment" else o for o in v], "kmm-operator-controller")
    c = vd["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    cfg = [o for o in v if o["kind"] == "ConfigMap"][0]["data"]["controller_config.yaml"]
    t.ok(c["image"] == "registry.example/kmm/kmm-operator:v9.9.9" and
         env["RELATED_IMAGE_WORKER"] == "registry.example/kmm/kmm-worker:v9.9.9" and
         env["RELATED_IMAGE_BUILD"] == "registry.example/kmm/kmm-builder:v9.9.9" and
         env["RELATED_IMAGE_SIGN"] == "registry.example/kmm/kmm-sign:v9.9.9",
         "images.registry and images.tag set every image, RELATED_IMAGE_* included", env)
    t.ok("imageCheck: pullPod" in cfg and "builder: kaniko" in cfg and
         "registryCAFile" not in cfg and
         {"name": "metrics", "containerPort": 9443} in c["ports"],
         "config.* become controller_config.yaml keys (null ones left out); ports follow them",
         cfg)
    t.ok(vd["spec"]["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
         and c["resources"]["limits"]["memory"] == "256Mi",
         "operator.tolerations and operator.resources are used")
    cm = by_id(docs(helm("template", REL, CHART, "--set", "certManager.enabled=true")))
    kcm = by_id(docs(kubectl("kustomize", os.path.join(DEPLOY, "cert-manager"))))
    t.ok(sorted(cm) == sorted(kcm), "certManager.enabled gives deploy/cert-manager's objects",
         sorted(set(cm) ^ set(kcm)))

    # install, upgrade, uninstall on the apiserver. Helm adopts no object it did not
    # create: the CRDs that suites before this one installed go first (no CR is left).
    kubectl("delete", "-k", os.path.join(DEPLOY, "crd"), "--ignore-not-found", "--wait=true",
            check=False)
    out = helm("install", REL, CHART, "--namespace", "default", "--wait=false", check=False,
               timeout=300)
    installed = True
    missing = missing_objects(INSTALL)
    t.ok("STATUS: deployed" in out and not missing, "helm install creates every object", (out,
                                                                                          missing))
    # kmm-webhook (on loopback) with the chart's ServiceAccount and RBAC writes its Secret.
    tmp = TMP
    os.makedirs(os.path.join(tmp, "certs"))
    wh = Webhook(free_port(), sa_kubeconfig(os.path.join(tmp, "sa.kubeconfig")),
                 os.path.join(tmp, "certs"), os.path.join(tmp, "webhook.log")).start()
    up = wh.listening()
    wh.stop()
    sd = secret_data() or {}
    t.ok(up and sd.get("ca.crt") and all(b == sd["ca.crt"] for b in ca_bundles().values()),
         "kmm-webhook under the chart's RBAC writes its Secret and every caBundle",
         wh.logtext()[-1000:])
    uid = {n: kj("get", "deployment", "-n", NS, n)["metadata"]["uid"]
           for n in ("kmm-operator-controller", "kmm-operator-webhook-server")}
    crd_uid = kj("get", "crd", "modules.kmm.sigs.x-k8s.io")["metadata"]["uid"]
    kubectl("create", "namespace", f"{REL}-mods")
    mod = {"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "Module",
           "metadata": {"name": "keep", "namespace": f"{REL}-mods"},
           "spec": {"selector": {"x": "y"}, "moduleLoader": {"container": {
               "modprobe": {"moduleName": "keep"},
               "kernelMappings": [{"regexp": "^.+$", "containerImage": "r.example/m:1"}]}}}}
    # The webhook does not run here (no pods on simulated nodes): out of the way for this write.
    kubectl("delete", "validatingwebhookconfiguration",
            "kmm-operator-validating-webhook-configuration")
    kubectl("apply", "-f", "-", input=json.dumps(mod))
    out = helm("upgrade", REL, CHART, "--namespace", "default", "--set", "images.tag=v2",
               check=False, timeout=300)
    dep = kj("get", "deployment", "-n", NS, "kmm-operator-controller")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    t.ok("has been upgraded" in out and
         dep["spec"]["template"]["spec"]["containers"][0]["image"] == "kmm-operator:v2" and
         env["RELATED_IMAGE_WORKER"] == "kmm-worker:v2",
         "helm upgrade --set images.tag=v2 rolls the operator to the new images", out)
    t.ok({n: kj("get", "deployment", "-n", NS, n)["metadata"]["uid"] for n in uid} == uid and
         kj("get", "crd", "modules.kmm.sigs.x-k8s.io")["metadata"]["uid"] == crd_uid and
         kj("get", "modules.kmm.sigs.x-k8s.io", "-n", f"{REL}-mods", "keep", check=False),
         "the upgrade updates objects in place: same Deployments and CRDs, Modules kept")
    t.ok(kj("get", "validatingwebhookconfiguration",
            "kmm-operator-validating-webhook-configuration", check=False),
         "the upgrade puts back a webhook configuration that went missing")
    # docs/install.md: Modules go first, while the operator still runs to unload them.
    kubectl("delete", "validatingwebhookconfiguration",
            "kmm-operator-validating-webhook-configuration")
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", f"{REL}-mods", "keep", "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False)
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "--all", "-A", "--wait=true", check=False)
    kubectl("delete", "namespace", f"{REL}-mods", "--wait=false")
    out = helm("uninstall", REL, "--namespace", "default", "--wait", check=False, timeout=300)
    installed = False
    gone = wait(lambda: not leftovers(), 120, 1)
    t.ok("uninstalled" in out and gone, "helm uninstall leaves nothing of kmm (CRDs, namespace "
         "and kmm-webhook's Secret in it, cluster RBAC, webhook configuration)",
         (out, leftovers()))
    t.ok(not kj("get", "secrets", "-n", "default", "-l", f"name={REL},owner=helm",
                check=False)["items"],
         "nor any Helm release record")


def cleanup():
    if installed:
        helm("uninstall", REL, "--namespace", "default", check=False)
    kubectl("delete", "namespace", f"{REL}-mods", "--ignore-not-found", "--wait=false",
            check=False)


sys.exit(run_suite(t, main, TMP, lambda: had_crds, cleanup))
