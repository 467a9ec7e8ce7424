#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-webhook's certificates without cert-manager, on the testenv: the install
(kubectl apply -k of an overlay of deploy/ whose webhooks call 127.0.0.1),
kmm-webhook on loopback as the install's own ServiceAccount (its RBAC, no
more), the Secret it writes, every caBundle it patches, the chain the
apiserver verifies end to end (a Module refused, a PreflightValidation
converted), a certificate rotation and a CA rotation under traffic, a
caBundle reset by someone else repaired, a restart that rotates nothing, and
the uninstall leaving nothing."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import (NS, PFV_CRD, SECRET, VWC, WEBHOOK_SA, Tap, Webhook, ca_bundles,  # noqa: E402
                       free_port, kj, kubectl, leftovers, openssl_verify, pem_count, preflight,
                       run_suite, sa_kubeconfig, secret_data, served_cert, uninstall_kustomize,
                       wait, write_overlay)

t = Tap()
TMP = tempfile.mkdtemp(prefix="kmm-deploy-certs-")
LOGDIR = os.environ.get("KMM_TEST_LOG_DIR", TMP)
TEST_NS = f"kmm-deploy-certs-{os.getpid()}"
had_crds = False
hooks = []

# Short lifetimes: the certificate is due after two thirds of 20 s (+5 s backdated),
# the CA of 60 s (+15 s).
CERT_S, CA_S = "20", "60"


def bad_module():
    # A kernel mapping regexp that does not compile: the schema takes it, kmm-webhook does not.
    return ('{"apiVersion":"kmm.sigs.x-k8s.io/v1beta1","kind":"Module","metadata":'
            f'{{"name":"bad","namespace":"{TEST_NS}"}},"spec":{{"selector":{{"a":"b"}},'
            '"moduleLoader":{"container":{"modprobe":{"moduleName":"m"},'
            '"kernelMappings":[{"regexp":"(","containerImage":"r.example/m:1"}]}}}}')


def good_module():
    return ('{"apiVersion":"kmm.sigs.x-k8s.io/v1beta1","kind":"Module","metadata":'
            f'{{"name":"good","namespace":"{TEST_NS}"}},"spec":{{"selector":{{"a":"b"}},'
            '"moduleLoader":{"container":{"modprobe":{"moduleName":"m"},'
            '"kernelMappings":[{"regexp":"^.+$","containerImage":"r.example/m:1"}]}}}}')


PFV = f"kmm-deploy-certs-{os.getpid()}"


def pfv_v1beta2():
    return ('{"apiVersion":"kmm.sigs.x-k8s.io/v1beta2","kind":"PreflightValidation",'
            f'"metadata":{{"name":"{PFV}"}},"spec":{{"kernelVersion":"6.1.0-18-amd64"}}}}')


def through_apiserver():
    """(refused, accepted, converted, why): the apiserver called kmm-webhook over
    TLS, trusting only the caBundles, for the Module webhook and the conversion."""
    bad = kubectl_err("create", "--dry-run=server", "-f", "-", input=bad_module())
    good = kubectl_err("create", "--dry-run=server", "-f", "-", input=good_module())
    # Read as v1beta1, the stored v1beta2 object goes through /convert.
    pfv = kubectl_err("get", f"preflightvalidations.v1beta1.kmm.sigs.x-k8s.io/{PFV}", "-o",
                      "jsonpath={.apiVersion} {.spec.kernelVersion}")
    bad = bad[1]
    refused = "admission webhook" in bad and "vmodule.kb.io" in bad and "denied" in bad
    return (refused, good[1] == "", pfv[0] == "kmm.sigs.x-k8s.io/v1beta1 6.1.0-18-amd64",
            (bad, good[1], pfv))


def lasts(pem, seconds):
    """The (first) certificate of pem is still valid in `seconds`."""
    import subprocess
    return subprocess.run(["openssl", "x509", "-noout", "-checkend", str(seconds)], input=pem,
                          capture_output=True, text=True).returncode == 0


def kubectl_err(*args, input=None):
    """(stdout, stderr) of kubectl; a refusal is in stderr."""
    import subprocess
    p = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True)
    return p.stdout.strip(), p.stderr.strip()


def main():
    global had_crds
    preflight()
    had_crds = kj("get", "crd", "modules.kmm.sigs.x-k8s.io", "--ignore-not-found",
                  check=False) is not None
    port = free_port()
    overlay = write_overlay(os.path.join(TMP, "overlay"), port)
    out = kubectl("apply", "--server-side", "--force-conflicts", "-k", overlay, check=False)
    t.ok("validatingwebhookconfiguration.admissionregistration.k8s.io/" + VWC in out
         and f"customresourcedefinition.apiextensions.k8s.io/{PFV_CRD} serverside-applied" in out,
         "the install (deploy/ with loopback webhook URLs) is applied server-side", out)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PFV_CRD}",
            "crd/modules.kmm.sigs.x-k8s.io", check=False)
    kubectl("create", "namespace", TEST_NS)
    t.ok(all(v is None for v in ca_bundles().values()),
         "before kmm-webhook starts no caBundle is set", ca_bundles())

    # ---- first start: Secret, files, caBundles ----
    kc = sa_kubeconfig(os.path.join(TMP, "sa.kubeconfig"))
    certdir = os.path.join(TMP, "certs")
    os.makedirs(certdir)
    extra = ("--cert-validity", CERT_S, "--ca-validity", CA_S, "--cert-check-interval", "1",
             "--cert-reload-interval", "1")
    wh = Webhook(port, kc, certdir, os.path.join(LOGDIR, f"kmm-webhook-certs-{os.getpid()}.log"),
                 extra).start()
    hooks.append(wh)
    t.ok(wh.listening(), f"kmm-webhook as ServiceAccount {WEBHOOK_SA} provisioned and listens",
         wh.logtext()[-2000:])
    s = secret_data()
    sec = kj("get", "secret", "-n", NS, SECRET, check=False) or {}
    t.ok(s and sorted(s) == ["ca.crt", "ca.key", "tls.crt", "tls.key"] and
         sec.get("type") == "kubernetes.io/tls",
         "the Secret is a kubernetes.io/tls with ca.crt, ca.key, tls.crt, tls.key",
         sorted(s or {}))
    files = {f: open(os.path.join(certdir, f)).read() for f in ("tls.crt", "tls.key", "ca.crt")}
    t.ok(s and files["tls.crt"] == s["tls.crt"] and files["tls.key"] == s["tls.key"] and
         files["ca.crt"] == s["ca.crt"] and
         (os.stat(os.path.join(certdir, "tls.key")).st_mode & 0o077) == 0,
         "--cert-dir holds the Secret's pair and CA (the key readable by its owner only)")
    b = ca_bundles()
    t.ok(len(b) == 4 and all(v == s["ca.crt"] for v in b.values()),
         "every caBundle (3 webhooks, the PFV conversion) is the Secret's ca.crt",
         {k: (v or "")[:40] for k, v in b.items()})
    for host in ("kmm-operator-webhook-service.kmm-operator-system.svc", "127.0.0.1"):
        ok, why = openssl_verify(s["ca.crt"], s["tls.crt"], host)
        t.ok(ok, f"openssl verifies tls.crt against ca.crt for {host}", why)
    t.ok(wait(lambda: served_cert(port) == secret_data()["tls.crt"], 10, 0.5),
         "kmm-webhook serves the Secret's certificate")

    out = kubectl_err("create", "-f", "-", input=pfv_v1beta2())
    t.ok(out[1] == "", "through the apiserver: a valid PreflightValidation passes kmm-webhook",
         out)
    refused, accepted, converted, why = through_apiserver()
    t.ok(refused, "through the apiserver: an invalid Module is refused by kmm-webhook", why)
    t.ok(accepted, "through the apiserver: a valid Module passes kmm-webhook", why)
    t.ok(converted, "through the apiserver: the PreflightValidation read as v1beta1 "
         "(the conversion webhook, trusted through the CRD's caBundle)", why)

    # ---- certificate rotation ----
    first = s
    s2 = wait(lambda: (lambda d: d if d and d["tls.crt"] != first["tls.crt"] else None)(
        secret_data()), 40, 0.5)
    t.ok(s2 is not None, "the certificate is rotated once due (two thirds of its lifetime)")
    s2 = s2 or first
    t.ok(s2["ca.crt"] == first["ca.crt"] and s2["ca.key"] == first["ca.key"],
         "a certificate rotation keeps the CA")
    t.ok(wait(lambda: served_cert(port) == secret_data()["tls.crt"], 15, 0.5),
         "kmm-webhook serves the rotated certificate without a restart")
    refused, accepted, converted, why = through_apiserver()
    t.ok(refused and accepted and converted,
         "through the apiserver after the certificate rotation: both webhooks still answer", why)

    # ---- CA rotation: the new CA joins the bundle before a certificate it signed is served ----
    s3 = wait(lambda: (lambda d: d if d and d["ca.key"] != first["ca.key"] else None)(
        secret_data()), 90, 0.5)
    t.ok(s3 is not None and pem_count(s3["ca.crt"]) == 2 and first["ca.crt"] in s3["ca.crt"],
         "the CA is rotated once due; the bundle holds the new CA and the old one",
         pem_count((s3 or {}).get("ca.crt")))
    s3 = s3 or first
    t.ok(wait(lambda: all(v == secret_data()["ca.crt"] for v in ca_bundles().values()), 10, 0.5),
         "after the CA rotation every caBundle is the two-CA bundle")
    ok, why = openssl_verify(s3["ca.crt"], s3["tls.crt"], "127.0.0.1")
    t.ok(ok, "the new certificate verifies against the bundle", why)
    refused, accepted, converted, why = through_apiserver()
    t.ok(refused and accepted and converted,
         "through the apiserver after the CA rotation: both webhooks still answer", why)

    # ---- a caBundle reset by someone else (a re-apply, a hand edit) is repaired ----
    kubectl("patch", "validatingwebhookconfiguration", VWC, "--type=json", "-p",
            '[{"op":"remove","path":"/webhooks/0/clientConfig/caBundle"}]')
    kubectl("patch", "crd", PFV_CRD, "--type=json", "-p",
            '[{"op":"remove","path":"/spec/conversion/webhook/clientConfig/caBundle"}]')
    t.ok(wait(lambda: all(v == secret_data()["ca.crt"] for v in ca_bundles().values()), 15, 0.5),
         "caBundles removed by hand are set again within a check interval")
    out = kubectl("apply", "--server-side", "--force-conflicts", "-k", overlay, check=False)
    time.sleep(1)
    t.ok(wait(lambda: all(v == secret_data()["ca.crt"] for v in ca_bundles().values()), 15, 0.5),
         "re-applying the install keeps (or gets back) every caBundle", out)

    # ---- a restart before anything is due changes nothing ----
    wh.stop()
    before = secret_data()
    wh2 = Webhook(port, kc, certdir, wh.log, ("--cert-validity", "3600", "--ca-validity",
                                               "86400", "--cert-check-interval", "1")).start()
    hooks.append(wh2)
    # The 10 s/40 s pair in the Secret is due: it rotates once, and the CAs of the
    # short-lived rounds leave the bundle as they expire (within 40 s).
    t.ok(wh2.listening(), "kmm-webhook restarts on the existing Secret", wh2.logtext()[-1500:])
    t.ok(wait(lambda: pem_count(secret_data()["ca.crt"]) == 1 and
              lasts(secret_data()["ca.crt"], 3000) and lasts(secret_data()["tls.crt"], 3000),
              120, 1),
         "under the new lifetimes the short CA is replaced once due and expired CAs leave "
         "the bundle", pem_count(secret_data()["ca.crt"]))
    t.ok(wait(lambda: all(v == secret_data()["ca.crt"] for v in ca_bundles().values()), 10, 0.5),
         "and every caBundle with them")
    settled = secret_data()
    time.sleep(4)
    t.ok(secret_data() == settled, "once valid, the Secret is left alone across rounds")
    wh2.stop()
    wh3 = Webhook(port, kc, certdir, wh.log + ".3", ("--cert-validity", "3600", "--ca-validity",
                                                      "86400", "--cert-check-interval", "1")).start()
    hooks.append(wh3)
    t.ok(wh3.listening() and secret_data() == settled and
         "change=keep secretWritten=false caBundlesPatched=0 filesWritten=false"
         in wh3.logtext(),
         "a restart with a valid Secret rotates, patches and writes nothing", wh3.logtext()[-800:])
    del before
    refused, accepted, converted, why = through_apiserver()
    t.ok(refused and accepted and converted, "after restarts both webhooks still answer", why)

    # ---- RBAC: what the install lets kmm-webhook do, and not ----
    sa = f"system:serviceaccount:{NS}:{WEBHOOK_SA}"
    can = {
        ("update", "secrets/" + SECRET, NS): "yes",
        ("get", "secrets/other", NS): "no",
        ("get", "secrets/" + SECRET, "default"): "no",
        ("patch", "validatingwebhookconfigurations/" + VWC, ""): "yes",
        ("patch", "validatingwebhookconfigurations/other", ""): "no",
        ("patch", "customresourcedefinitions/" + PFV_CRD, ""): "yes",
        ("patch", "customresourcedefinitions/modules.kmm.sigs.x-k8s.io", ""): "no",
        ("list", "secrets", NS): "no",
        ("create", "pods", NS): "no",
    }
    got = {}
    for (verb, res, ns), want in can.items():
        args = ["auth", "can-i", verb, res, "--as", sa]
        if ns:
            args += ["-n", ns]
        got[(verb, res, ns)] = kubectl(*args, check=False).strip()
    t.ok(all(got[k] == v for k, v in can.items()),
         "kmm-webhook's RBAC: its Secret, its webhook configuration and the PFV CRD, nothing else",
         {f"{k[0]} {k[1]} {k[2]}": (got[k], v) for k, v in can.items() if got[k] != v})

    # ---- uninstall ----
    for w in hooks:
        w.stop()
    kubectl("delete", "namespace", TEST_NS, "--wait=false", check=False)
    kubectl("delete", "preflightvalidations.kmm.sigs.x-k8s.io", PFV, "--ignore-not-found",
            check=False)
    gone = uninstall_kustomize(overlay)
    t.ok(gone, "kubectl delete -k leaves nothing of kmm (namespace, Secret, CRDs, RBAC, webhooks)",
         leftovers())


def cleanup():
    for w in hooks:
        w.stop()
    san = [ln for w in hooks for ln in w.logtext().splitlines()
           if "Sanitizer" in ln or "runtime error:" in ln]
    t.ok(not san, "no sanitizer reports from kmm-webhook", "\n".join(san[:20]))
    kubectl("delete", "namespace", TEST_NS, "--ignore-not-found", "--wait=false", check=False)


sys.exit(run_suite(t, main, TMP, lambda: had_crds, cleanup))
