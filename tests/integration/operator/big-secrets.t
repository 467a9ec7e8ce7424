#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator in a cluster full of large Secrets and ConfigMaps it has no
business reading (Helm keeps ~1 MiB release Secrets): it syncs, a Module
converges, its peak RSS stays within 1 MiB of a run without them and it reads
no more bytes from the apiserver than without them; and it works, key
rotation included, with nothing but deploy/rbac's permissions, which allow
get of Secrets and ConfigMaps but neither list nor watch.

Both memory runs use the same kmm-operator binary, the same Module (with a
pull secret, read by name) on the same node, the same steps and a fixed
settle time. Peak RSS is the kernel's VmHWM (/proc/PID/status). What the
operator asked the apiserver, and how many bytes came back, is recorded by a
TLS-terminating relay the operator's kubeconfig points at (ApiRecorder): it
forwards every request unchanged, with the admin client certificate, to the
testenv apiserver."""

import asyncio
import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (OPERATOR, SRC, Operator, PodWatch, Tap, apply, bail, force_cleanup, kj,  # noqa: E402
                   kubectl, kmm_get, mic_state, module, module_obj, preflight, push_image,
                   ready_on, testenv, wait)

K1 = "6.1.0-18-amd64"
K1_DNS = "6-1-0-18-amd64"
NS = "op-bigsec"              # the Module's namespace, with half the noise
NOISE_NS = "op-bigsec-noise"  # the other half, and the ConfigMaps
RBAC_NS = "op-bigsec-rbac"
SYS = "op-bigsec-system"
OP_NS = "kmm-operator-system"  # deploy/rbac's namespace
SA = f"system:serviceaccount:{OP_NS}:kmm-operator-controller"
N_SECRETS = int(os.environ.get("KMM_OP_BIG_SECRETS", "2000"))
N_CONFIGMAPS = 200
OBJ_KIB = 256
RSS_SLACK_KIB = 1024
READ_SLACK = 128 * 1024  # half of one noise Secret
SETTLE_S = 10
RECHECK_S = 10  # KMM_OP_INPUT_RECHECK_MS (lib/operator/engine-internal.h)
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
BUILD_IMAGE = "registry.example/kaniko:v1.23.2"
SIGN_IMAGE = "registry.example/kmm-sign:test"
RT = "kmm.node.kubernetes.io/resource-type"
RUN = f"r{os.getpid()}"
t = Tap()
NODES = []


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


def secret(ns, name, data, stype="Opaque"):
    apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
           "type": stype, "data": {k: b64(v) for k, v in data.items()}})


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


class ApiRecorder:
    """HTTPS on 127.0.0.1 relaying to the testenv apiserver (HTTP/1.1 only):
    records each request line and counts the bytes the apiserver sent back.
    One asyncio loop in a thread (an ssl socket must not be read and written
    from two threads at once)."""

    def __init__(self, workdir):
        te = os.environ["KMM_TESTENV_DIR"]
        host, port = os.environ["KMM_TESTENV_APISERVER"].split("://", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cert = os.path.join(workdir, "relay.crt")
        key = os.path.join(workdir, "relay.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", self.cert], check=True, capture_output=True)
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ctx.load_cert_chain(self.cert, key)
        self.server_ctx.set_alpn_protocols(["http/1.1"])
        self.client_ctx = ssl.create_default_context(cafile=os.environ["KMM_TESTENV_CA"])
        self.client_ctx.load_cert_chain(os.path.join(te, "pki", "admin.crt"),
                                        os.path.join(te, "pki", "admin.key"))
        self.client_ctx.set_alpn_protocols(["http/1.1"])
        self.lock = threading.Lock()
        self.requests = []  # "METHOD /path?query"
        self.bytes_in = 0   # from the apiserver, headers and bodies
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()

    def kubeconfig(self, path):
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "relay",
               "clusters": [{"name": "relay", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                          "certificate-authority": self.cert}}],
               "users": [{"name": "relay", "user": {}}],
               "contexts": [{"name": "relay", "context": {"cluster": "relay", "user": "relay"}}]}
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def reset(self):
        with self.lock:
            self.requests, self.bytes_in = [], 0

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._serve, sock=self.sock,
                                                          ssl=self.server_ctx))
        self.loop.run_forever()

    async def _serve(self, down_r, down_w):
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream, ssl=self.client_ctx,
                                                       server_hostname=self.upstream[0])
        except (OSError, ssl.SSLError):
            down_w.close()
            return
        back = asyncio.ensure_future(self._back(up_r, down_w))
        try:
            while True:
                head = await down_r.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await down_r.readexactly(int(m.group(1))) if m else b""
                line = head.split(b"\r\n", 1)[0].decode(errors="replace")
                with self.lock:
                    self.requests.append(line.rsplit(" ", 1)[0])
                up_w.write(head + body)
                await up_w.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            up_w.close()
            back.cancel()
            down_w.close()

    async def _back(self, up_r, down_w):
        try:
            while True:
                chunk = await up_r.read(65536)
                if not chunk:
                    break
                with self.lock:
                    self.bytes_in += len(chunk)
                down_w.write(chunk)
                await down_w.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            down_w.close()


def secret_or_cm_requests(reqs):
    """Requests that touch Secrets or ConfigMaps: (method, namespace, kind, name or None)."""
    out = []
    for r in reqs:
        method, _, path = r.partition(" ")
        m = re.match(r"/api/v1/(?:namespaces/([^/?]+)/)?(secrets|configmaps)(?:/([^/?]+))?", path)
        if m:
            out.append((method, m.group(1), m.group(2), m.group(3), path))
    return out


# ---- the noise ----

def names_in(ns, resource):
    """Names of the Secrets or ConfigMaps of ns, listed as metadata only."""
    te = os.environ["KMM_TESTENV_DIR"]
    ctx = ssl.create_default_context(cafile=os.environ["KMM_TESTENV_CA"])
    ctx.load_cert_chain(os.path.join(te, "pki", "admin.crt"), os.path.join(te, "pki", "admin.key"))
    names, cont = set(), ""
    while True:
        url = (f"{os.environ['KMM_TESTENV_APISERVER']}/api/v1/namespaces/{ns}/{resource}"
               f"?limit=500&continue={cont}")
        req = urllib.request.Request(url, headers={
            "Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"})
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            page = json.load(r)
        names.update(i["metadata"]["name"] for i in page.get("items") or [])
        cont = page.get("metadata", {}).get("continue")
        if not cont:
            return names


def create_batch(kind, ns, prefix, start, count):
    have = names_in(ns, kind.lower() + "s")
    items = []
    for i in range(start, start + count):
        if f"{prefix}-{i:05d}" in have:
            continue
        blob = b64(os.urandom(OBJ_KIB * 1024))
        meta = {"name": f"{prefix}-{i:05d}", "namespace": ns}
        if kind == "Secret":
            items.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                          "data": {"blob": blob}})
        else:
            items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                          "binaryData": {"blob": blob}})
    if not items:
        return ""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    p = subprocess.run(["kubectl", "create", "-f", "-", "-o", "name"], input=body,
                       capture_output=True, text=True, timeout=600)
    return p.stderr.strip()


def create_noise():
    """N_SECRETS Secrets (half in the Module's namespace) and N_CONFIGMAPS
    ConfigMaps of OBJ_KIB KiB of random data each; returns (secrets, cms)."""
    jobs = []
    half = N_SECRETS // 2
    for ns, n in ((NS, half), (NOISE_NS, N_SECRETS - half)):
        for s in range(0, n, 50):
            jobs.append(("Secret", ns, "noise", s, min(50, n - s)))
    for s in range(0, N_CONFIGMAPS, 50):
        jobs.append(("ConfigMap", NOISE_NS, "noise", s, min(50, N_CONFIGMAPS - s)))
    errs = []
    lock = threading.Lock()

    def worker(todo):
        while True:
            with lock:
                if not todo:
                    return
                job = todo.pop()
            err = create_batch(*job)
            with lock:
                if err:
                    errs.append(err)
    # A batch may lose a few objects to a busy apiserver: a second pass creates what is missing.
    for _ in range(2):
        todo = list(jobs)
        threads = [threading.Thread(target=worker, args=(todo,)) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    n_sec = sum(1 for ns in (NS, NOISE_NS) for n in names_in(ns, "secrets") if n.startswith("noise-"))
    n_cm = sum(1 for n in names_in(NOISE_NS, "configmaps") if n.startswith("noise-"))
    return n_sec, n_cm, errs[:3]


# ---- one measured run ----

def measured_run(label, img, rec, kubeconfig):
    """Operator start -> caches synced -> Module converged -> settle ->
    figures -> Module deleted -> stop. Returns the figures or None."""
    # No ASan quarantine (ignored by builds without ASan): freed memory it keeps
    # resident would make the peak follow the volume allocated, not what is live.
    op = Operator(f"bigsec-{label}", SYS, extra_env={
        "KUBECONFIG": kubeconfig,
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=0:"
                        "thread_local_quarantine_size_kb=0"})
    rec.reset()
    op.start()
    res = None
    try:
        t0 = time.time()
        synced = wait(lambda: "caches synced" in op.logtext() or not op.alive(), 240, interval=0.5)
        synced = synced and op.alive()
        t.ok(synced, f"{label}: caches synced in {time.time() - t0:.1f} s", op.logtext()[-3000:])
        if not synced:
            return None
        m = module_obj(NS, "bs", {"op-bigsec/sel": "yes"},
                       [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}])
        m["spec"]["imageRepoSecret"] = {"name": "op-bigsec-pull"}
        apply(m)
        ok = wait(lambda: ready_on(NS, "bs", NODES), 120, interval=0.5)
        t.ok(ok, f"{label}: Module converges (loaded on {len(NODES)} node)", module(NS, "bs"))
        time.sleep(SETTLE_S)
        with rec.lock:
            res = {"hwm_kib": vm_hwm_kib(op.proc.pid), "bytes_in": rec.bytes_in}
        t.diag(f"{label}: VmHWM {res['hwm_kib']} KiB, {res['bytes_in']} bytes from the apiserver")
        kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", NS, "bs", "--wait=false")
        gone = wait(lambda: module(NS, "bs") is None, 120, interval=0.5)
        t.ok(gone, f"{label}: Module deleted (unloaded, finalizer released)")
    finally:
        rc = op.stop()
        san = [ln for ln in op.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(rc == 0 and not san, f"{label}: SIGTERM exits 0, no sanitizer reports",
             "\n".join(san[:20]) or op.logtext()[-2000:])
    if res:
        with rec.lock:
            res["requests"] = list(rec.requests)
    return res


def memory_and_bytes(img, workdir):
    rec = ApiRecorder(workdir)
    kubeconfig = rec.kubeconfig(os.path.join(workdir, "relay.kubeconfig"))
    base = measured_run("without the noise", img, rec, kubeconfig)
    t0 = time.time()
    ns, nc, errs = create_noise()
    t.ok(ns == N_SECRETS and nc == N_CONFIGMAPS,
         f"{ns} unrelated {OBJ_KIB} KiB Secrets ({N_SECRETS // 2} in the Module's namespace) and "
         f"{nc} ConfigMaps created in {time.time() - t0:.0f} s", "\n".join(errs))
    big = measured_run(f"with {ns} Secrets", img, rec, kubeconfig)
    if not base or not big:
        t.ok(False, "peak RSS compared (a run failed)")
        t.ok(False, "requests and bytes compared (a run failed)")
        return
    touched = secret_or_cm_requests(big["requests"])
    bad = [x for x in touched if x[0] != "GET" or (x[1], x[2], x[3]) != (NS, "secrets", "op-bigsec-pull")]
    t.ok(touched and not bad,
         f"of Secrets and ConfigMaps the operator requested only GET {NS}/op-bigsec-pull "
         f"({len(touched)} times) among {len(big['requests'])} requests; no list, no watch",
         "\n".join(x[4] for x in bad[:20]))
    d = big["hwm_kib"] - base["hwm_kib"]
    t.ok(d <= RSS_SLACK_KIB,
         f"peak RSS (VmHWM) {big['hwm_kib']} KiB with the noise, {base['hwm_kib']} KiB without: "
         f"{d:+d} KiB, within {RSS_SLACK_KIB} KiB")
    d = big["bytes_in"] - base["bytes_in"]
    noise = N_SECRETS * OBJ_KIB * 1024
    t.ok(d <= READ_SLACK,
         f"bytes from the apiserver {big['bytes_in']} with the noise, {base['bytes_in']} without: "
         f"{d:+d}, within {READ_SLACK} (one Secret is {OBJ_KIB * 1024}, all {noise}): none was fetched")


# ---- deploy/rbac ----

def can_i(verb, resource, ns=None):
    args = ["auth", "can-i", verb, resource, f"--as={SA}"]
    args += ["-n", ns] if ns else ["-A"]
    p = subprocess.run(["kubectl", *args], capture_output=True, text=True)
    return p.stdout.strip()


def sa_kubeconfig():
    token = kubectl("create", "token", "kmm-operator-controller", "-n", OP_NS,
                    "--duration", "3600s").strip()
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
           "clusters": [{"name": "testenv", "cluster": {
               "server": os.environ["KMM_TESTENV_APISERVER"],
               "certificate-authority": os.environ["KMM_TESTENV_CA"]}}],
           "users": [{"name": "sa", "user": {"token": token}}],
           "contexts": [{"name": "sa", "context": {"cluster": "testenv", "user": "sa"}}]}
    f = tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False)
    json.dump(cfg, f)
    f.close()
    os.chmod(f.name, 0o600)
    return f.name


class ConfigMapOperator(Operator):
    """Reads its configuration from a ConfigMap in OPERATOR_NAMESPACE (--config),
    as deployed, instead of a file."""

    def __init__(self, name, namespace, cm, **kw):
        super().__init__(name, namespace, **kw)
        self.cm = cm

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([OPERATOR, "--config", self.cm], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self


def mbsc_result(ns, name, image):
    o = kmm_get("modulebuildsignconfigs", ns, name) or {}
    for s in (o.get("status") or {}).get("images") or []:
        if s.get("image") == image:
            return (s.get("action"), s.get("status"))
    return None


def signed_with(ns, name):
    o = kmm_get("modulebuildsignconfigs", ns, name) or {}
    return o.get("metadata", {}).get("annotations", {}).get("kmm.node.kubernetes.io/signed-with")


def rbac_case():
    made_ns = kubectl("get", "namespace", OP_NS, "--ignore-not-found", "-o", "name").strip() == ""
    if made_ns:
        kubectl("create", "namespace", OP_NS)
    kubectl("apply", "-k", os.path.join(SRC, "deploy", "rbac"))
    answers = {(v, r): can_i(v, r) for v in ("get", "list", "watch") for r in ("secrets", "configmaps")}
    answers.update({(v, r + f" -n {OP_NS}"): can_i(v, r, OP_NS)
                    for v in ("list", "watch") for r in ("secrets", "configmaps")})
    want = {k: ("yes" if k[0] == "get" else "no") for k in answers}
    t.ok(answers == want, "deploy/rbac: the operator's ServiceAccount may get Secrets and ConfigMaps, "
         "not list or watch them (in any namespace)",
         "\n".join(f"can-i {v} {r}: {a} (want {want[(v, r)]})" for (v, r), a in answers.items()))
    op = None
    try:
        kubeconfig = sa_kubeconfig()
        apply({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "op-bigsec-config", "namespace": OP_NS},
               "data": {"controller_config.yaml": "\n".join([
                   "healthProbeBindAddress: 127.0.0.1:0", "metrics:", "  bindAddress: 127.0.0.1:0",
                   "leaderElection:", "  enabled: true", "  resourceID: op-bigsec-lease",
                   "job:", "  gcDelay: 0s"]) + "\n"}})
        kubectl("create", "namespace", RBAC_NS)
        secret(RBAC_NS, "op-bigsec-pull", {".dockerconfigjson": '{"auths":{}}'},
               "kubernetes.io/dockerconfigjson")
        secret(RBAC_NS, "op-bigsec-key", {"key": "KEY-1"})
        secret(RBAC_NS, "op-bigsec-cert", {"cert": "CERT-1"})
        op = ConfigMapOperator("bigsec-rbac", OP_NS, "op-bigsec-config",
                               extra_env={"KUBECONFIG": kubeconfig,
                                          "RELATED_IMAGE_BUILD": BUILD_IMAGE,
                                          "RELATED_IMAGE_SIGN": SIGN_IMAGE}).start()
        t.ok(wait(lambda: "caches synced" in op.logtext() or not op.alive(), 120) and op.alive(),
             "as the ServiceAccount: config ConfigMap read, leader, caches synced", op.logtext()[-3000:])
        unsigned = push_image(f"op-bigsec/unsigned-{RUN}:{K1}", [K1])
        img = f"{REG}/op-bigsec/signed-{RUN}:{K1}"
        sign = {"unsignedImage": unsigned, "unsignedImageRegistryTLS": {"insecure": True},
                "keySecret": {"name": "op-bigsec-key"}, "certSecret": {"name": "op-bigsec-cert"},
                "filesToSign": [f"/opt/lib/modules/{K1}/*.ko"]}
        m = module_obj(RBAC_NS, "sg", {"op-bigsec/sel": "yes"},
                       [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True},
                         "sign": sign}])
        m["spec"]["imageRepoSecret"] = {"name": "op-bigsec-pull"}
        w = PodWatch(RBAC_NS, selector=RT)
        apply(m)
        ok = wait(lambda: mbsc_result(RBAC_NS, "sg", img) == ("SignImage", "Success"), 90) \
            and wait(lambda: mic_state(RBAC_NS, "sg", img) == "Exists", 30) \
            and wait(lambda: ready_on(RBAC_NS, "sg", NODES), 60)
        rec = wait(lambda: signed_with(RBAC_NS, "sg"), 30)
        t.ok(ok and rec, "as the ServiceAccount: pull and signing Secrets read by name, image signed, "
             "module loaded", kmm_get("modulebuildsignconfigs", RBAC_NS, "sg"))
        wait(lambda: kj("get", "pods", "-n", RBAC_NS, "-l", RT)["items"] == [], 30)
        n0 = len([o for typ, o in w.events if typ == "ADDED"])
        t0 = time.time()
        secret(RBAC_NS, "op-bigsec-key", {"key": "KEY-2"})
        new_pod = wait(lambda: len([o for typ, o in w.events if typ == "ADDED"]) > n0,
                       RECHECK_S + 20, interval=0.2)
        dt = time.time() - t0
        t.ok(new_pod and dt <= RECHECK_S + 5,
             f"as the ServiceAccount: rotated key seen without a watch, new sign pod after {dt:.1f} s "
             f"(bound {RECHECK_S} s + a reconcile)")
        rec2 = wait(lambda: (lambda r: r if r and r != rec else None)(signed_with(RBAC_NS, "sg")), 60)
        t.ok(rec2 and mbsc_result(RBAC_NS, "sg", img) == ("SignImage", "Success"),
             "as the ServiceAccount: signed again with the new key, new digests recorded", rec2)
        w.close()
        denied = [ln for ln in op.logtext().splitlines() if "forbidden" in ln.lower() or " 403" in ln]
        t.ok(not denied, "as the ServiceAccount: no request was forbidden (deploy/rbac covers the operator)",
             "\n".join(denied[:20]))
        kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", RBAC_NS, "sg", "--wait=false")
        t.ok(wait(lambda: module(RBAC_NS, "sg") is None, 120), "as the ServiceAccount: Module deleted")
    finally:
        if op:
            rc = op.stop()
            t.ok(rc == 0, "as the ServiceAccount: SIGTERM exits 0", op.logtext()[-2000:])
        force_cleanup(RBAC_NS, [])
        kubectl("delete", "configmap", "-n", OP_NS, "op-bigsec-config", "--ignore-not-found", check=False)
        kubectl("delete", "lease", "-n", OP_NS, "op-bigsec-lease", "--ignore-not-found", check=False)
        if made_ns:
            kubectl("delete", "-k", os.path.join(SRC, "deploy", "rbac"), "--ignore-not-found",
                    "--wait=false", check=False)
            kubectl("delete", "namespace", OP_NS, "--wait=false", check=False)


def main():
    preflight()
    for ns in (NS, NOISE_NS, SYS, RBAC_NS):
        # A previous run's namespaces may still be going (thousands of Secrets).
        if not wait(lambda: not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name"), 300, 2):
            bail(f"namespace {ns} from an earlier run is still there after 300 s")
    for ns in (NS, NOISE_NS, SYS):
        kubectl("create", "namespace", ns)
    try:
        testenv("nodes", "add", "op-bigsec-n", "--count", "1", "--kernel", K1,
                "--label", "op-bigsec/sel=yes")
        NODES.append("op-bigsec-n-1")
        secret(NS, "op-bigsec-pull", {".dockerconfigjson": '{"auths":{}}'},
               "kubernetes.io/dockerconfigjson")
        img = push_image(f"op-bigsec/bs-{RUN}:{K1}", [K1])
        workdir = tempfile.mkdtemp(prefix="kmm-bigsec-")
        for fn in (lambda: memory_and_bytes(img, workdir), rbac_case):
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, "raised", traceback.format_exc())
    finally:
        for ns in (NS, NOISE_NS, SYS):
            force_cleanup(ns, [])
        force_cleanup(RBAC_NS, NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
