#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# The hub's and the spoke's installs (docs/hub-spoke.md): deploy/hub and
# deploy/spoke build deploy/'s objects plus theirs, with --hub / KMM_MANAGED=1,
# the MCM CRD, RBAC and webhook entry; the Helm chart's hub.enabled and
# spoke.enabled give the same objects as the overlays, refuse both at once,
# and change nothing when neither is set. The apiserver accepts both
# overlays' cluster-scoped objects (server-side dry run).
import json
import os
import subprocess
import sys

SRC = os.environ.get("KMM_SOURCE_DIR", "")
sys.path.insert(0, os.path.join(SRC, "tests", "integration", "deploy"))
from deploylib import CHART, DEPLOY, Tap, docs, helm, ids, kubectl, preflight  # noqa: E402

t = Tap()


def find(objs, kind, name):
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


def container(objs, deployment):
    return find(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def main():
    preflight(need_helm=True)
    base = docs(kubectl("kustomize", DEPLOY))
    hub = docs(kubectl("kustomize", os.path.join(DEPLOY, "hub")))
    spoke = docs(kubectl("kustomize", os.path.join(DEPLOY, "spoke")))
    extra_hub = sorted(set(ids(hub)) - set(ids(base)))
    t.ok(set(ids(base)) <= set(ids(hub)) and extra_hub == [
        ("ClusterRole", "", "kmm-operator-hub-role"),
        ("ClusterRoleBinding", "", "kmm-operator-hub-rolebinding"),
        ("CustomResourceDefinition", "", "managedclustermodules.hub.kmm.sigs.x-k8s.io")],
        "deploy/hub: deploy/'s objects plus the MCM CRD and the hub's RBAC", extra_hub)
    op = container(hub, "kmm-operator-controller")
    wh = container(hub, "kmm-operator-webhook-server")
    vwc = find(hub, "ValidatingWebhookConfiguration",
               "kmm-operator-validating-webhook-configuration")
    cfg = find(hub, "ConfigMap", "kmm-operator-manager-config")["data"]["controller_config.yaml"]
    t.ok("--hub" in op["args"] and "--enable-managedclustermodule" in wh["args"]
         and any(w["clientConfig"]["service"]["path"] ==
                 "/validate-hub-kmm-sigs-x-k8s-io-v1beta1-managedclustermodule"
                 for w in vwc["webhooks"])
         and "resourceID: kmm-hub.sigs.x-k8s.io" in cfg,
         "deploy/hub: --hub, the MCM webhook and flag, the hub's Lease", op["args"])
    extra_spoke = sorted(set(ids(spoke)) - set(ids(base)))
    env = {e["name"]: e.get("value") for e in container(spoke, "kmm-operator-controller")["env"]}
    t.ok(extra_spoke == [("ClusterRole", "", "kmm-operator-spoke-role"),
                         ("ClusterRoleBinding", "", "kmm-operator-spoke-rolebinding")]
         and env.get("KMM_MANAGED") == "1",
         "deploy/spoke: deploy/'s objects, KMM_MANAGED=1 and the ClusterClaim's RBAC",
         extra_spoke)

    h_hub = docs(helm("template", "kmm", CHART, "--set", "hub.enabled=true"))
    h_spoke = docs(helm("template", "kmm", CHART, "--set", "spoke.enabled=true"))
    h_base = docs(helm("template", "kmm", CHART))
    t.ok(ids(h_hub) == ids(hub) and ids(h_spoke) == ids(spoke) and ids(h_base) == ids(base),
         "Helm's hub.enabled / spoke.enabled give the overlays' objects",
         sorted(set(ids(h_hub)) ^ set(ids(hub))))
    hop = container(h_hub, "kmm-operator-controller")
    hvwc = find(h_hub, "ValidatingWebhookConfiguration",
                "kmm-operator-validating-webhook-configuration")
    t.ok("--hub" in hop["args"]
         and "--enable-managedclustermodule" in container(h_hub, "kmm-operator-webhook-server")["args"]
         and [w["name"] for w in hvwc["webhooks"]] == [w["name"] for w in vwc["webhooks"]]
         and any(e["name"] == "KMM_MANAGED" for e in container(h_spoke, "kmm-operator-controller")["env"]),
         "Helm: the same flags, environment and webhook entries")
    p = subprocess.run([os.path.join(SRC, "tests", "env", "testenv"), "helm", "template", "kmm",
                        CHART, "--set", "hub.enabled=true", "--set", "spoke.enabled=true"],
                       capture_output=True, text=True, timeout=300)
    t.ok(p.returncode != 0 and "exclude each other" in p.stderr,
         "Helm refuses hub and spoke at once", p.stderr[-400:])

    # The cluster-scoped objects (the namespaced ones need the namespace to exist).
    for name, objs in (("hub", hub), ("spoke", spoke)):
        cluster = [o for o in objs if "namespace" not in o["metadata"] and o["kind"] != "Namespace"]
        p = subprocess.run(["kubectl", "apply", "--dry-run=server", "--server-side",
                            "--field-manager=kmm-hub-deploy-test", "-f", "-"],
                           input=json.dumps({"apiVersion": "v1", "kind": "List", "items": cluster}),
                           capture_output=True, text=True)
        t.ok(p.returncode == 0, f"deploy/{name}'s cluster-scoped objects pass the apiserver's "
             "server-side dry run", p.stderr[-600:])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        import traceback
        t.ok(False, f"suite crashed: {e}")
        t.diag(traceback.format_exc())
    sys.exit(t.finish())
