#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`kubectl apply -k deploy/` on the testenv's real apiserver: the objects the
install is made of, `images:` reaching the operator's RELATED_IMAGE_* values
from an overlay, the cert-manager variant, a server-side apply every object
passes, a re-apply that changes nothing, and docs/install.md's uninstall
leaving nothing of kmm."""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import (DEPLOY, INSTALL, NS, VWC, Tap, docs, ids, kj, kubectl,  # noqa: E402
                       leftovers, missing_objects, preflight, run_suite, uninstall_kustomize)

t = Tap()
TMP = tempfile.mkdtemp(prefix="kmm-deploy-kustomize-")
had_crds = False


def deployment(items, name):
    return next(o for o in items if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def env_of(dep):
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def main():
    global had_crds
    preflight()
    had_crds = kj("get", "crd", "modules.kmm.sigs.x-k8s.io", "--ignore-not-found",
                  check=False) is not None
    built = docs(kubectl("kustomize", DEPLOY))
    t.ok(ids(built) == INSTALL, "deploy/ builds the install's 25 objects",
         json.dumps([list(x) for x in sorted(set(ids(built)) ^ set(INSTALL))]))
    op = deployment(built, "kmm-operator-controller")
    c = op["spec"]["template"]["spec"]["containers"][0]
    t.ok(c.get("livenessProbe") and c.get("readinessProbe") and c["resources"].get("limits"),
         "the operator Deployment has probes, requests and limits")
    wh = deployment(built, "kmm-operator-webhook-server")
    wc = wh["spec"]["template"]["spec"]["containers"][0]
    t.ok(wc.get("readinessProbe", {}).get("httpGet", {}).get("scheme") == "HTTPS" and
         "--cert-secret=kmm-operator-webhook-server-cert" in wc["args"] and
         wh["spec"]["template"]["spec"]["serviceAccountName"] == "kmm-operator-webhook",
         "kmm-webhook runs as its own ServiceAccount and provisions its certificate",
         wc.get("args"))
    vwc = next(o for o in built if o["kind"] == "ValidatingWebhookConfiguration")
    t.ok(all(h["failurePolicy"] == "Fail" and h["clientConfig"]["service"]["name"] ==
             "kmm-operator-webhook-service" for h in vwc["webhooks"]),
         "the webhooks call kmm-operator-webhook-service, failurePolicy Fail")

    # An overlay that sets the registry and tag reaches the images the operator hands out.
    ov = os.path.join(TMP, "images")
    os.makedirs(ov)
    shutil.copy(os.path.join(DEPLOY, "kustomizeconfig.yaml"), ov)
    with open(os.path.join(ov, "kustomization.yaml"), "w") as f:
        json.dump({"resources": [os.path.relpath(DEPLOY, ov)],
                   "configurations": ["kustomizeconfig.yaml"],
                   "images": [{"name": n, "newName": f"registry.example/kmm/{n}",
                               "newTag": "v9.9.9"}
                              for n in ("kmm-operator", "kmm-webhook", "kmm-worker", "kmm-sign",
                                        "kmm-builder")]}, f)
    over = docs(kubectl("kustomize", ov))
    e = env_of(deployment(over, "kmm-operator-controller"))
    images = [deployment(over, n)["spec"]["template"]["spec"]["containers"][0]["image"]
              for n in ("kmm-operator-controller", "kmm-operator-webhook-server")]
    t.ok(images == ["registry.example/kmm/kmm-operator:v9.9.9",
                    "registry.example/kmm/kmm-webhook:v9.9.9"] and
         e.get("RELATED_IMAGE_WORKER") == "registry.example/kmm/kmm-worker:v9.9.9" and
         e.get("RELATED_IMAGE_SIGN") == "registry.example/kmm/kmm-sign:v9.9.9" and
         e.get("RELATED_IMAGE_BUILD") == "registry.example/kmm/kmm-builder:v9.9.9",
         "images: in an overlay sets every image, RELATED_IMAGE_* included", (images, e))

    # cert-manager instead of kmm-webhook's own certificates.
    cm = docs(kubectl("kustomize", os.path.join(DEPLOY, "cert-manager")))
    cm_ids = set(ids(cm))
    want = (set(INSTALL) - {x for x in INSTALL if x[2].startswith("kmm-operator-webhook-cert-")}
            | {("Issuer", NS, "kmm-operator-selfsigned-issuer"),
               ("Certificate", NS, "kmm-operator-serving-cert")})
    cmw = deployment(cm, "kmm-operator-webhook-server")["spec"]["template"]["spec"]
    annotated = [o["metadata"]["name"] for o in cm
                 if (o["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
                 == f"{NS}/kmm-operator-serving-cert"]
    t.ok(cm_ids == want and not any(a.startswith("--cert-secret") for a in
                                    cmw["containers"][0]["args"]) and
         cmw["volumes"][0].get("secret", {}).get("secretName") ==
         "kmm-operator-webhook-server-cert" and
         sorted(annotated) == sorted([VWC, "preflightvalidations.kmm.sigs.x-k8s.io"]),
         "deploy/cert-manager: a Certificate instead of kmm-webhook's certificate RBAC, "
         "its Secret mounted, cainjector annotations",
         (sorted(cm_ids ^ want), annotated))

    # The real apiserver takes every object (server-side apply: schema, RBAC escalation checks).
    # --force-conflicts: suites before this one may have edited the CRDs kmm leaves installed.
    p = kubectl("apply", "--server-side", "--force-conflicts", "-k", DEPLOY, check=False)
    t.ok(p.count("serverside-applied") == len(INSTALL), "kubectl apply --server-side -k deploy/ "
         "is accepted for every object", p)
    live = missing_objects(INSTALL)
    t.ok(not live, "every object of the install exists in the cluster", live)
    gens = {n: kj("get", "deployment", "-n", NS, n)["metadata"]["generation"]
            for n in ("kmm-operator-controller", "kmm-operator-webhook-server")}
    p2 = kubectl("apply", "--server-side", "-k", DEPLOY, check=False)
    gens2 = {n: kj("get", "deployment", "-n", NS, n)["metadata"]["generation"]
             for n in gens}
    t.ok(gens == gens2 and p2.count("serverside-applied") == len(INSTALL),
         "re-applying the same install changes no Deployment (no rollout)", (gens, gens2))
    p3 = kubectl("apply", "-k", DEPLOY, check=False)
    t.ok("error" not in p3.lower(), "client-side kubectl apply -k deploy/ also works", p3[-500:])

    gone = uninstall_kustomize()
    t.ok(gone, "kubectl delete -k deploy/ leaves nothing of kmm", leftovers())


sys.exit(run_suite(t, main, TMP, lambda: had_crds))
