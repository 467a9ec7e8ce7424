# SPDX-License-Identifier: Apache-2.0
"""Shared by tests/integration/deploy/*.t: the install's objects, test
overlays of deploy/ that point the webhooks at a kmm-webhook on loopback,
kmm-webhook processes running as the install's ServiceAccount, and the
"nothing of kmm is left" check. Every suite uninstalls what it installed:
the testenv is shared with the suites that run after it."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SRC = os.environ.get("KMM_SOURCE_DIR", "")
BUILD = os.environ.get("KMM_BUILD_DIR", "")
sys.path.insert(0, os.path.join(SRC, "tests", "integration", "operator"))
from oplib import Tap, bail, kj, kubectl, run, wait  # noqa: E402,F401

TESTENV = os.path.join(SRC, "tests", "env", "testenv")
WEBHOOK = os.path.join(BUILD, "src", "webhook", "kmm-webhook")
DEPLOY = os.path.join(SRC, "deploy")
CHART = os.path.join(DEPLOY, "helm", "kmm")
NS = "kmm-operator-system"
VWC = "kmm-operator-validating-webhook-configuration"
PFV_CRD = "preflightvalidations.kmm.sigs.x-k8s.io"
SECRET = "kmm-operator-webhook-server-cert"
WEBHOOK_SA = "kmm-operator-webhook"
KMM_CRDS = ["modules", "nodemodulesconfigs", "moduleimagesconfigs", "modulebuildsignconfigs",
            "preflightvalidations"]
CLUSTER_KINDS = ["customresourcedefinitions", "clusterroles", "clusterrolebindings",
                 "validatingwebhookconfigurations", "mutatingwebhookconfigurations"]

# What `kubectl apply -k deploy/` installs, as (kind, namespace, name).
INSTALL = sorted([
    ("Namespace", "", NS),
    *[("CustomResourceDefinition", "", f"{p}.kmm.sigs.x-k8s.io") for p in KMM_CRDS],
    ("ServiceAccount", NS, "kmm-operator-controller"),
    ("ServiceAccount", NS, WEBHOOK_SA),
    ("Role", NS, "kmm-operator-leader-election-role"),
    ("Role", NS, "kmm-operator-webhook-cert-role"),
    ("RoleBinding", NS, "kmm-operator-leader-election-rolebinding"),
    ("RoleBinding", NS, "kmm-operator-webhook-cert-rolebinding"),
    ("ClusterRole", "", "kmm-operator-manager-role"),
    ("ClusterRole", "", "kmm-operator-metrics-auth-role"),
    ("ClusterRole", "", "kmm-operator-metrics-reader"),
    ("ClusterRole", "", "kmm-operator-webhook-cert-role"),
    ("ClusterRoleBinding", "", "kmm-operator-manager-rolebinding"),
    ("ClusterRoleBinding", "", "kmm-operator-metrics-auth-rolebinding"),
    ("ClusterRoleBinding", "", "kmm-operator-webhook-cert-rolebinding"),
    ("ConfigMap", NS, "kmm-operator-manager-config"),
    ("Service", NS, "kmm-operator-controller-metrics-service"),
    ("Service", NS, "kmm-operator-webhook-service"),
    ("Deployment", NS, "kmm-operator-controller"),
    ("Deployment", NS, "kmm-operator-webhook-server"),
    ("ValidatingWebhookConfiguration", "", VWC),
])


def preflight(need_helm=False):
    if not SRC or not BUILD:
        bail("KMM_SOURCE_DIR and KMM_BUILD_DIR must be set (run under tests/run)")
    if not os.environ.get("KUBECONFIG") or not os.path.exists(os.environ["KUBECONFIG"]):
        bail("no control plane: KUBECONFIG unset (run under tests/run or eval testenv env)")
    for tool in ("kubectl", "openssl"):
        if not shutil.which(tool):
            bail(f"{tool} not found")
    if not os.access(WEBHOOK, os.X_OK):
        bail(f"{WEBHOOK} not built")
    # A suite before this one may still be deleting its kmm namespace. (The CRDs
    # may be there: the suites before install them, and these suites put them back.)
    wait(lambda: not leftovers(crds=False), 180, 1)
    left = leftovers(crds=False)
    if left:
        bail(f"kmm is still installed, uninstall it first: {left[:5]}")
    if need_helm:
        # Built from Go modules by `testenv build` (scripts/install-deps); built here if not yet.
        p = subprocess.run([TESTENV, "helm", "version", "--short"], capture_output=True,
                           text=True, timeout=1100)
        if p.returncode != 0:
            bail(f"helm: {p.stderr.strip()[-400:]}")


def helm(*args, check=True, timeout=300):
    return run(TESTENV, "helm", *args, check=check, timeout=timeout)


def docs(yaml_text):
    """The objects of a multi-document YAML, parsed by kubectl without the server
    (`label --local` knows no kinds, so cert-manager's parse too; the label it
    needs to be given is taken off again)."""
    p = subprocess.run(["kubectl", "label", "--local", "-f", "-", "-o", "json",
                        "kmm-deploy-test-parse=1"], input=yaml_text, capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    dec, s, i, items = json.JSONDecoder(), p.stdout, 0, []
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            break
        o, i = dec.raw_decode(s, i)
        labels = o["metadata"].get("labels") or {}
        labels.pop("kmm-deploy-test-parse", None)
        if not labels:
            o["metadata"].pop("labels", None)
        items.extend(o["items"] if o.get("kind") == "List" else [o])
    return items


def ids(items):
    return sorted((o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                  for o in items)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_overlay(d, port, images=None, extra=""):
    """An overlay of deploy/ in d whose webhooks call https://127.0.0.1:port (the
    apiserver cannot reach Services here: no pods run on simulated nodes)."""
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(DEPLOY, "kustomizeconfig.yaml"), d)
    url = f"https://127.0.0.1:{port}"
    paths = {0: "/validate-kmm-sigs-x-k8s-io-v1beta1-module",
             1: "/validate-kmm-sigs-x-k8s-io-v1beta2-preflightvalidation",
             2: "/validate--v1-namespace"}
    vwc_ops = []
    for i, p in paths.items():
        vwc_ops.append({"op": "remove", "path": f"/webhooks/{i}/clientConfig/service"})
        vwc_ops.append({"op": "add", "path": f"/webhooks/{i}/clientConfig/url", "value": url + p})
    crd_ops = [{"op": "remove", "path": "/spec/conversion/webhook/clientConfig/service"},
               {"op": "add", "path": "/spec/conversion/webhook/clientConfig/url",
                "value": url + "/convert"}]
    k = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": [os.path.relpath(DEPLOY, d)],
         "configurations": ["kustomizeconfig.yaml"],
         "patches": [
             {"target": {"kind": "ValidatingWebhookConfiguration", "name": VWC},
              "patch": json.dumps(vwc_ops)},
             {"target": {"kind": "CustomResourceDefinition", "name": PFV_CRD},
              "patch": json.dumps(crd_ops)}]}
    if images:
        k["images"] = images
    with open(os.path.join(d, "kustomization.yaml"), "w") as f:
        f.write(json.dumps(k, indent=1) + "\n" + extra)
    return d


def sa_kubeconfig(path, sa=WEBHOOK_SA, ns=NS):
    """A kubeconfig holding a token of the install's ServiceAccount: what runs with
    it has exactly the install's RBAC."""
    tok = kubectl("-n", ns, "create", "token", sa, "--duration=1h").strip()
    cfg = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": "t", "cluster": {
               "server": os.environ["KMM_TESTENV_APISERVER"],
               "certificate-authority": os.environ["KMM_TESTENV_CA"]}}],
           "users": [{"name": "sa", "user": {"token": tok}}],
           "contexts": [{"name": "t", "context": {"cluster": "t", "user": "sa",
                                                  "namespace": ns}}],
           "current-context": "t"}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


class Webhook:
    """kmm-webhook on 127.0.0.1:port provisioning its certificate (--cert-secret)."""

    def __init__(self, port, kubeconfig, cert_dir, log, extra=()):
        self.port = port
        self.log = log
        self.args = [WEBHOOK, "--kubeconfig", kubeconfig, "--bind-address", f"127.0.0.1:{port}",
                     "--cert-dir", cert_dir, "--cert-secret", SECRET,
                     "--cert-service", "kmm-operator-webhook-service", "--cert-host", "127.0.0.1",
                     "--cert-webhook-config", VWC, "--cert-conversion-crd", PFV_CRD,
                     "--enable-module", "--enable-namespace", "--enable-preflightvalidation",
                     *extra]
        self.env = dict(os.environ, POD_NAMESPACE=NS)
        self.proc = None

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        return self

    def listening(self, timeout=60):
        return wait(lambda: "webhook server listening" in self.logtext() or
                    (self.proc.poll() is not None and "exited"), timeout) is True

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


def secret_data():
    s = kj("get", "secret", "-n", NS, SECRET, "--ignore-not-found", check=False)
    if not s:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}


def ca_bundles():
    """Every caBundle kmm-webhook keeps (decoded), by where it is."""
    out = {}
    v = kj("get", "validatingwebhookconfiguration", VWC, "--ignore-not-found", check=False) or {}
    for h in v.get("webhooks", []):
        cb = h.get("clientConfig", {}).get("caBundle")
        out[h["name"]] = base64.b64decode(cb).decode() if cb else None
    c = kj("get", "crd", PFV_CRD, "--ignore-not-found", check=False) or {}
    cb = (((c.get("spec") or {}).get("conversion") or {}).get("webhook") or {}).get(
        "clientConfig", {}).get("caBundle")
    out["crd/" + PFV_CRD] = base64.b64decode(cb).decode() if cb else None
    return out


def served_cert(port):
    """The PEM certificate the server on 127.0.0.1:port presents."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-servername", "127.0.0.1"], input="", capture_output=True, text=True,
                       timeout=20)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", p.stdout,
                  re.S)
    return m.group(0) if m else None


def openssl_verify(ca_pem, cert_pem, host=None):
    with tempfile.TemporaryDirectory() as d:
        ca, crt = os.path.join(d, "ca.crt"), os.path.join(d, "tls.crt")
        open(ca, "w").write(ca_pem)
        open(crt, "w").write(cert_pem)
        args = ["openssl", "verify", "-CAfile", ca, "-purpose", "sslserver"]
        if host:
            args += ["-verify_ip" if re.match(r"^[0-9.]+$", host) else "-verify_hostname", host]
        p = subprocess.run(args + [crt], capture_output=True, text=True)
        return p.returncode == 0, (p.stdout + p.stderr).strip()


def pem_count(pem):
    return (pem or "").count("-----BEGIN CERTIFICATE-----")


def missing_objects(objects):
    """The (kind, namespace, name) of objects that do not exist in the cluster."""
    out = []
    for kind, ns, name in objects:
        args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
        if ns:
            args += ["-n", ns]
        if not kubectl(*args, check=False).strip():
            out.append((kind, ns, name))
    return out


def leftovers(crds=True):
    """Everything of kmm still in the cluster: the namespace, cluster-scoped objects
    named kmm-* or *.kmm.sigs.x-k8s.io (CRDs unless crds is false), objects
    labelled part-of=kmm anywhere."""
    left = []
    if kj("get", "namespace", NS, "--ignore-not-found", check=False):
        left.append(f"namespace/{NS}")
    for kind in CLUSTER_KINDS:
        if kind == "customresourcedefinitions" and not crds:
            continue
        items = (kj("get", kind, check=False) or {}).get("items", [])
        for o in items:
            n = o["metadata"]["name"]
            if n.startswith("kmm-") or n.endswith(".kmm.sigs.x-k8s.io"):
                left.append(f"{kind}/{n}")
    labelled = kj("get", "all,secrets,configmaps,serviceaccounts,roles,rolebindings", "-A",
                  "-l", "app.kubernetes.io/part-of=kmm", check=False) or {}
    for o in labelled.get("items", []):
        left.append(f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}")
    return left


def uninstall_kustomize(path=DEPLOY, timeout=120):
    """docs/install.md's uninstall: Modules and PreflightValidations first (the
    operator must still run to unload and release their finalizers), then
    kubectl delete -k; the namespace takes kmm-webhook's Secret with it."""
    kubectl("delete", "-k", path, "--ignore-not-found", "--wait=true", f"--timeout={timeout}s",
            check=False)
    return wait(lambda: not leftovers(), timeout, 1)


def force_uninstall():
    """For cleanup after a failure: remove what a failed case left (no operator runs)."""
    for crd in KMM_CRDS:
        full = f"{crd}.kmm.sigs.x-k8s.io"
        items = (kj("get", full, "-A", check=False) or {}).get("items", [])
        for o in items:
            args = ["patch", full, o["metadata"]["name"], "--type=merge", "-p",
                    '{"metadata":{"finalizers":null}}']
            if o["metadata"].get("namespace"):
                args += ["-n", o["metadata"]["namespace"]]
            kubectl(*args, check=False)
    kubectl("delete", "validatingwebhookconfiguration", VWC, "--ignore-not-found", check=False)
    kubectl("delete", "-k", DEPLOY, "--ignore-not-found", "--wait=false", check=False)
    wait(lambda: not leftovers(), 60, 1)


def restore_crds():
    """Leave the CRDs installed as the suites after this one expect them (they apply
    deploy/crd themselves, but an api suite run alone after this must find them too)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-k", os.path.join(DEPLOY, "crd"),
            check=False)


def run_suite(t, main, tmp, had_crds, cleanup=None):
    """Runs a deploy suite's main(): a crash is one more failure, with its trace. Then
    cleanup() (the suite's own processes and objects), an uninstall of whatever of kmm
    is left, and the CRDs put back when had_crds() says a previous suite had left them.
    tmp goes when all passed (logs stay for a failure). Returns the exit code."""
    try:
        main()
    except Exception:  # noqa: BLE001 - a crash is one more failure, with its trace
        t.ok(False, "the suite ran to the end", traceback.format_exc())
    finally:
        if cleanup:
            cleanup()
        if leftovers():
            force_uninstall()
        if had_crds():
            restore_crds()
    if not t.failed:
        shutil.rmtree(tmp, ignore_errors=True)
    return t.finish()
