#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's PreflightValidation reconciler against the testenv: a
v1beta2 PreflightValidation verifies every Module for its kernel (an image in
the testenv registry: Success; an image that does not exist and has no build:
Failure saying why, not InProgress; no mapping: Failure), the status in
upstream's fields, the preflight MICs controlled by the PFV, a missing image
pushed later turning into Success, a build's stages (InProgress, then
Success once the build pod completed), kmm_preflight_num, and a v1beta1
PreflightValidation through the conversion webhook (kmm-webhook started here,
the CRD's conversion pointed at it and restored at the end)."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (BUILD, Operator, Tap, apply, force_cleanup, kj, kubectl,  # noqa: E402
                   module_obj, preflight, push_image, testenv, wait)

K = "6.8.0-31-generic"
ID = os.getpid()
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
NS = f"op-pf-{ID}"
PFV = f"op-pf-{ID}"
PFV1 = f"op-pf1-{ID}"
PFVB = f"op-pfb-{ID}"
NSB = f"op-pf-b-{ID}"
NODEB = f"op-pf-b-{ID}-n"
CRD = "preflightvalidations.kmm.sigs.x-k8s.io"
WEBHOOK = os.path.join(BUILD, "src", "webhook", "kmm-webhook")
t = Tap()


def mapping(image, regexp=r"^6\.8\."):
    return [{"regexp": regexp, "containerImage": image, "registryTLS": {"insecure": True}}]


def pfv_obj(name, version="v1beta2"):
    return {"apiVersion": f"kmm.sigs.x-k8s.io/{version}", "kind": "PreflightValidation",
            "metadata": {"name": name}, "spec": {"kernelVersion": K}}


def verdicts(name, ns=NS):
    """{module: status entry} of a PFV read as v1beta2, for the Modules of ns."""
    o = kj("get", f"preflightvalidations.v1beta2.kmm.sigs.x-k8s.io/{name}", "--ignore-not-found") or {}
    return {e.get("name"): e for e in (o.get("status") or {}).get("modules") or []
            if e.get("namespace") == ns}


def verdict_is(name, mod, status, ns=NS):
    e = verdicts(name, ns).get(mod)
    return e if e and e.get("verificationStatus") == status else None


def gauge(op, name):
    st, body = op.get("/metrics")
    for line in body.splitlines() if st == 200 else []:
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def mkcerts(d):
    """A CA and a serving certificate for 127.0.0.1 in d; returns the CA's PEM."""
    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca.key", "-out",
        f"{d}/ca.crt", "-days", "2", "-subj", f"/CN=kmm-preflight-test-ca-{ID}")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/tls.key", "-out",
        f"{d}/tls.csr", "-subj", "/CN=127.0.0.1")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", f"{d}/tls.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
        "-CAcreateserial", "-out", f"{d}/tls.crt", "-days", "2", "-extfile", f"{d}/ext")
    with open(f"{d}/ca.crt", "rb") as f:
        return f.read()


class Webhook:
    """kmm-webhook serving /convert, and the CRD's conversion pointed at it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp()
        self.proc = None
        self.orig = None

    def start(self):
        ca = mkcerts(self.dir)
        self.log = open(f"{self.dir}/wh.log", "w+")
        self.proc = subprocess.Popen([WEBHOOK, "--bind-address", "127.0.0.1:0", "--cert-dir",
                                      self.dir, "--enable-preflightvalidation"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def port():
            with open(f"{self.dir}/wh.log") as f:
                for line in f:
                    if "webhook server listening port=" in line:
                        return line.split("port=")[1].split()[0]
            return None
        p = wait(port, 10)
        if not p:
            return False
        self.orig = kj("get", "crd", CRD)["spec"]["conversion"]
        conv = {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"service": None, "url": f"https://127.0.0.1:{p}/convert",
                             "caBundle": base64.b64encode(ca).decode()}}}
        kubectl("patch", "crd", CRD, "--type=merge", "-p", json.dumps({"spec": {"conversion": conv}}))
        return True

    def stop(self):
        if self.orig is not None:
            cc = self.orig.get("webhook", {}).get("clientConfig", {})
            restore = {"strategy": self.orig.get("strategy"), "webhook": dict(
                self.orig.get("webhook", {}),
                clientConfig={"url": None, "caBundle": cc.get("caBundle"), "service": cc.get("service")})}
            kubectl("patch", "crd", CRD, "--type=merge", "-p",
                    json.dumps({"spec": {"conversion": restore}}), check=False)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def v2_verdicts(op):
    img = push_image(f"op-pf/present:{K}", [K])
    missing = f"{REG}/op-pf/missing-{ID}:{K}"  # never pushed before, even on a reused testenv
    kubectl("create", "namespace", NS)
    none = {"op-pf/none": "x"}  # no node needed: preflight is about images, not nodes
    apply(module_obj(NS, "present", none, mapping(f"{REG}/op-pf/present:${{KERNEL_FULL_VERSION}}")))
    apply(module_obj(NS, "missing", none, mapping(f"{REG}/op-pf/missing-{ID}:${{KERNEL_FULL_VERSION}}")))
    apply(module_obj(NS, "nomap", none, mapping(f"{REG}/op-pf/present:{K}", regexp=r"^5\.")))
    apply(pfv_obj(PFV))

    e = wait(lambda: verdict_is(PFV, "present", "Success"), 60)
    t.ok(e and e.get("verificationStage") == "Done" and img in e.get("statusReason", "")
         and e.get("lastTransitionTime"),
         "v1beta2: existing image -> Success, stage Done, statusReason and lastTransitionTime",
         verdicts(PFV))
    e = wait(lambda: verdict_is(PFV, "missing", "Failure"), 60)
    t.ok(e and e.get("verificationStage") == "Done" and "does not exist" in e.get("statusReason", "")
         and "no build or sign" in e.get("statusReason", ""),
         "v1beta2: missing image without build -> Failure saying why (not InProgress)", verdicts(PFV))
    e = wait(lambda: verdict_is(PFV, "nomap", "Failure"), 30)
    t.ok(e and "mapping not found" in e.get("statusReason", ""),
         "v1beta2: no mapping for the kernel -> Failure, mapping not found", verdicts(PFV))
    mic = kj("get", "moduleimagesconfigs.kmm.sigs.x-k8s.io", "-n", NS, f"present-preflight-{PFV}",
             "--ignore-not-found") or {}
    refs = mic.get("metadata", {}).get("ownerReferences") or [{}]
    t.ok(refs[0].get("kind") == "PreflightValidation" and refs[0].get("name") == PFV
         and refs[0].get("controller") and mic["spec"]["images"][0]["image"] == img,
         "v1beta2: the image is checked through MIC <module>-preflight-<pfv> controlled by the PFV",
         mic.get("metadata"))
    t.ok(not kj("get", "moduleimagesconfigs.kmm.sigs.x-k8s.io", "-n", NS, f"nomap-preflight-{PFV}",
                "--ignore-not-found"), "v1beta2: no MIC for a Module without mapping")
    push_image(f"op-pf/missing-{ID}:{K}", [K])
    e = wait(lambda: verdict_is(PFV, "missing", "Success"), 120, 1)
    t.ok(e, "v1beta2: the missing image pushed later -> Success (Failure is not final)", verdicts(PFV))


def v1beta1_conversion(op):
    wh = Webhook()
    try:
        if not t.ok(wh.start(), "conversion: kmm-webhook started, CRD conversion pointed at it"):
            return
        out = wait(lambda: kj("get", f"preflightvalidations.v1beta1.kmm.sigs.x-k8s.io/{PFV}",
                              check=False), 30)
        st = ((out or {}).get("status") or {}).get("crStatuses") or {}
        t.ok(out and out["apiVersion"].endswith("/v1beta1")
             and (st.get(f"{NS}/present") or {}).get("verificationStatus") == "Success",
             "conversion: the v1beta2 PFV's verdicts read as v1beta1 crStatuses", st)
        apply(pfv_obj(PFV1, "v1beta1"))
        e = wait(lambda: verdict_is(PFV1, "present", "Success"), 60)
        t.ok(e, "conversion: a PFV created as v1beta1 is verified alongside the first (its own MICs): Success for the existing image",
             verdicts(PFV1))
        out = kj("get", f"preflightvalidations.v1beta1.kmm.sigs.x-k8s.io/{PFV1}", check=False) or {}
        st = (out.get("status") or {}).get("crStatuses") or {}
        t.ok((st.get(f"{NS}/nomap") or {}).get("verificationStatus") == "Failure",
             "conversion: ... and its v1beta1 crStatuses say Failure for the unmapped Module", st)
        t.ok(wait(lambda: gauge(op, "kmm_preflight_num") == 2, 20),
             "metrics: kmm_preflight_num counts the PreflightValidations (2)",
             gauge(op, "kmm_preflight_num"))
        kubectl("delete", "pfv", PFV1, "--wait=false")
    finally:
        wh.stop()


def build_stages(op):
    """A mapping with a build: InProgress at stage Image while the build pod waits
    for a node its build.selector matches, then Success once kwok completes it."""
    ns = NSB
    kubectl("create", "namespace", ns)
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "op-pf-dockerfile", "namespace": ns},
           "data": {"dockerfile": "FROM scratch\n"}})
    repo = f"op-pf/built-{ID}"
    build = {"dockerfileConfigMap": {"name": "op-pf-dockerfile"},
             "baseImageRegistryTLS": {"insecure": True}, "selector": {"op-pf/builder": f"{ID}"}}
    apply(module_obj(ns, "bld", {"op-pf/none": "x"},
                     mapping(f"{REG}/{repo}:${{KERNEL_FULL_VERSION}}"), build=build))
    apply(pfv_obj(PFVB))
    e = wait(lambda: verdict_is(PFVB, "bld", "InProgress", ns)
             if "being built" in (verdicts(PFVB, ns).get("bld") or {}).get("statusReason", "") else None, 60)
    t.ok(e and e.get("verificationStage") == "Image",
         "build: InProgress at stage Image, the image is being built", verdicts(PFVB, ns))
    mic = f"bld-preflight-{PFVB}"
    p = wait(lambda: kj("get", "pod", "-n", ns, f"{mic}-build-{K.replace('.', '-')}", "--ignore-not-found"), 30)
    args = p["spec"]["containers"][0].get("args", []) if p else []
    t.ok(p and "--no-push" in args, "build: the build pod runs for the preflight MIC, --no-push "
         "(the PFV's pushBuiltImage is false)", args)
    testenv("nodes", "add", NODEB, "--count", "1", "--kernel", K, "--label", f"op-pf/builder={ID}")
    e = wait(lambda: verdict_is(PFVB, "bld", "Success", ns), 90, 1)
    t.ok(e and e.get("verificationStage") == "Done",
         "build: the build pod succeeded -> Success, stage Done", verdicts(PFVB, ns))
    kubectl("delete", "pfv", PFVB, "--wait=false")


def pfv_deleted(op):
    kubectl("delete", f"preflightvalidations.v1beta2.kmm.sigs.x-k8s.io/{PFV}", "--wait=false")
    gone = wait(lambda: not kj("get", "moduleimagesconfigs.kmm.sigs.x-k8s.io", "-n", NS,
                               f"present-preflight-{PFV}", "--ignore-not-found"), 60)
    t.ok(gone, "deleted PFV: its preflight MICs are garbage-collected")
    t.ok(wait(lambda: gauge(op, "kmm_preflight_num") == 0, 30),
         "metrics: kmm_preflight_num back to 0", gauge(op, "kmm_preflight_num"))


def main():
    preflight()
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    op = Operator("preflight", f"op-pf-system-{ID}",
                  extra_env={"RELATED_IMAGE_BUILD": "registry.example/kaniko:v1.23.2"},
                  extra_config=[f"registryCAFile: {os.environ.get('KMM_TESTENV_REGISTRY_TLS_CA', '')}"])
    kubectl("create", "namespace", f"op-pf-system-{ID}", check=False)
    op.start()
    try:
        t.ok(op.ports() is not None, "operator: started", op.logtext()[-2000:])
        for fn in (v2_verdicts, v1beta1_conversion, pfv_deleted, build_stages):
            try:
                fn(op)
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
    finally:
        rc = op.stop()
        t.ok(rc == 0, "operator: SIGTERM exits 0", op.logtext()[-3000:])
        san = [ln for ln in op.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))
        kubectl("delete", "pfv", PFV, PFV1, PFVB, "--ignore-not-found", "--wait=false", check=False)
        for ns in (NS, NSB, f"op-pf-system-{ID}"):
            force_cleanup(ns, [])
        force_cleanup(f"op-pf-none-{ID}", [f"{NODEB}-1"])
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
