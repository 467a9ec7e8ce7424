#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# kmm-webhook --enable-managedclustermodule through the real apiserver
# (docs/hub-spoke.md): a ValidatingWebhookConfiguration on loopback for the
# hub's path; the apiserver refuses an MCM whose moduleSpec breaks the
# Module rules (the message names spec.moduleSpec...), and a switch of
# moduleLoader.container.version between empty and set on update; it
# accepts a good MCM, and a DRA one although this apiserver may be older
# than DRA (no version gate on the hub). Without the flag the path is 404.
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hublib  # noqa: E402
from hublib import MCM  # noqa: E402
import oplib  # noqa: E402
from oplib import kubectl  # noqa: E402

t = oplib.Tap()
WEBHOOK = os.path.join(oplib.BUILD, "src", "webhook", "kmm-webhook")
VWC = "kmm-hub-test-mcm-webhook"
PATH = "/validate-hub-kmm-sigs-x-k8s-io-v1beta1-managedclustermodule"


def certs(d):
    def sh(*a):
        subprocess.run(a, check=True, capture_output=True)
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca.key",
       "-out", f"{d}/ca.crt", "-days", "2", "-subj", "/CN=kmm-hub-webhook-test-ca")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/tls.key", "-out",
       f"{d}/tls.csr", "-subj", "/CN=127.0.0.1")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/ca.crt", "-CAkey",
       f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/tls.crt", "-days", "2", "-extfile",
       f"{d}/ext")


def start(d, *flags):
    log = open(f"{d}/wh-{len(flags)}.log", "w")
    p = subprocess.Popen([WEBHOOK, "--bind-address", "127.0.0.1:0", "--cert-dir", d,
                          "--kube-version", "none", *flags], stdout=log, stderr=subprocess.STDOUT)

    def port():
        m = re.search(r"webhook server listening port=(\d+)", open(log.name).read())
        return int(m.group(1)) if m else None
    return p, oplib.wait(port, 10), log.name


def mcm(name, image="i:1", version=None, dra=False):
    c = {"modprobe": {"moduleName": "a"},
         "kernelMappings": [{"regexp": "^.+$", "containerImage": image}]}
    if version:
        c["version"] = version
    spec = {"selector": {}, "moduleLoader": {"container": c}}
    if dra:
        spec["dra"] = {"driverName": "gpu.example.com", "container": {"image": "d:1"}}
    return {"apiVersion": "hub.kmm.sigs.x-k8s.io/v1beta1", "kind": "ManagedClusterModule",
            "metadata": {"name": name},
            "spec": {"spokeNamespace": "kmm", "selector": {"fleet": "a"}, "moduleSpec": spec}}


def apply(obj):
    return subprocess.run(["kubectl", "apply", "-f", "-"], input=json.dumps(obj),
                          capture_output=True, text=True)


def main():
    hublib.install_crds()
    if not os.access(WEBHOOK, os.X_OK):
        oplib.bail(f"{WEBHOOK} not built")
    d = tempfile.mkdtemp(prefix="kmm-hub-webhook-")
    certs(d)
    off, off_port, _ = start(d)
    on, port, log = start(d, "--enable-managedclustermodule")
    try:
        ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
        req = urllib.request.Request(f"https://127.0.0.1:{off_port}{PATH}", data=b"{}",
                                     headers={"Content-Type": "application/json"})
        try:
            code = urllib.request.urlopen(req, context=ctx, timeout=5).status
        except urllib.error.HTTPError as e:
            code = e.code
        t.ok(code == 404, "without --enable-managedclustermodule the hub's path is 404", code)
        t.ok(port is not None and "managedclustermodule=true" in open(log).read(),
             "kmm-webhook --enable-managedclustermodule serves and says so", open(log).read())
        ca = base64.b64encode(open(f"{d}/ca.crt", "rb").read()).decode()
        oplib.apply({"apiVersion": "admissionregistration.k8s.io/v1",
                     "kind": "ValidatingWebhookConfiguration", "metadata": {"name": VWC},
                     "webhooks": [{"name": "vmanagedclustermodule.kb.io",
                                   "admissionReviewVersions": ["v1"], "sideEffects": "None",
                                   "failurePolicy": "Fail",
                                   "clientConfig": {"url": f"https://127.0.0.1:{port}{PATH}",
                                                    "caBundle": ca},
                                   "rules": [{"apiGroups": ["hub.kmm.sigs.x-k8s.io"],
                                              "apiVersions": ["v1beta1"],
                                              "operations": ["CREATE", "UPDATE"],
                                              "resources": ["managedclustermodules"]}]}]})
        # The apiserver picks a new webhook configuration up within a second or so.
        bad = oplib.wait(lambda: (lambda p: p if p.returncode != 0 else None)(
            apply(mcm("hub-wh-bad", image="img"))), 20)
        t.ok(bad is not None and "spec.moduleSpec.moduleLoader.container.kernelMappings[0]."
             "containerImage" in bad.stderr and "must explicitly set a tag or digest" in bad.stderr,
             "an image without tag or digest is refused, naming spec.moduleSpec's path",
             bad.stderr if bad else "accepted")
        good = apply(mcm("hub-wh-good", version="v1"))
        t.ok(good.returncode == 0, "a good MCM is accepted", good.stderr)
        dra = apply(mcm("hub-wh-dra", dra=True))
        t.ok(dra.returncode == 0, "a DRA moduleSpec is accepted (no version gate on the hub)",
             dra.stderr)
        switch = apply(mcm("hub-wh-good"))
        t.ok(switch.returncode != 0 and "version" in switch.stderr and "Forbidden" in switch.stderr,
             "version switched from set to empty on update is refused", switch.stderr)
        long = apply(mcm("a-managed-cluster-module-with-a-long-name"))
        t.ok(long.returncode != 0 and "41" in long.stderr,
             "name + spokeNamespace over 41 characters is refused (the spoke's Module)",
             long.stderr)
    finally:
        kubectl("delete", "validatingwebhookconfiguration", VWC, "--ignore-not-found", check=False)
        kubectl("delete", MCM, "hub-wh-good", "hub-wh-dra", "hub-wh-bad",
                "--ignore-not-found", "--wait=false", check=False)
        for p in (on, off):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        t.ok(on.returncode in (0, -15), "kmm-webhook stops on SIGTERM", on.returncode)
        hublib.remove_hub_crd()


if __name__ == "__main__":
    hublib.run_main(t, main)
