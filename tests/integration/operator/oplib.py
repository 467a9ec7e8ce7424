# SPDX-License-Identifier: Apache-2.0
"""Shared by tests/integration/operator/*.t: TAP output, kubectl, the testenv,
kmm-operator processes and a pod watcher that sees worker pods as created
(kwok completes them at once, so their shape is checked from the watch)."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

SRC = os.environ.get("KMM_SOURCE_DIR", "")
BUILD = os.environ.get("KMM_BUILD_DIR", "")
TESTENV = os.path.join(SRC, "tests", "env", "testenv")
OPERATOR = os.path.join(BUILD, "src", "operator", "kmm-operator")


class Tap:
    """TAP with the plan printed last (the number of cases depends on what ran)."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def finish(self):
        print(f"1..{self.n}", flush=True)
        return 1 if self.failed else 0

    def ok(self, cond, desc, diag=None):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {desc}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {desc}", flush=True)
            if diag:
                for line in str(diag).splitlines()[:40]:
                    print(f"# {line}", flush=True)
        return cond

    def diag(self, msg):
        for line in str(msg).splitlines():
            print(f"# {line}", flush=True)


def bail(msg, plan=1):
    print(f"1..{plan}")
    print(f"not ok 1 - {msg}")
    sys.exit(1)


def preflight():
    if not SRC or not BUILD:
        bail("KMM_SOURCE_DIR and KMM_BUILD_DIR must be set (run under tests/run)")
    if not os.environ.get("KUBECONFIG") or not os.path.exists(os.environ["KUBECONFIG"]):
        bail("no control plane: KUBECONFIG unset (run under tests/run or eval testenv env)")
    if not os.access(OPERATOR, os.X_OK):
        bail(f"{OPERATOR} not built")
    if not os.environ.get("KMM_TESTENV_REGISTRY"):
        bail("KMM_TESTENV_REGISTRY unset: the testenv registry is needed")
    crd = os.path.join(SRC, "deploy", "crd")
    p = subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-k", crd],
                       capture_output=True, text=True)
    if p.returncode != 0:
        bail(f"cannot install the CRDs from {crd}: {p.stderr.strip()}")
    p = subprocess.run(["kubectl", "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/modules.kmm.sigs.x-k8s.io", "crd/nodemodulesconfigs.kmm.sigs.x-k8s.io"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        bail(f"CRDs not established: {p.stderr.strip()}")


def run(*args, input=None, check=True, timeout=120):
    p = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def kubectl(*args, input=None, check=True):
    return run("kubectl", *args, input=input, check=check)


def kj(*args, check=True):
    out = kubectl(*args, "-o", "json", check=check)
    return json.loads(out) if out.strip() else None


def apply(obj):
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def testenv(*args):
    return run(TESTENV, *args, timeout=300)


def wait(pred, timeout=60, interval=0.3):
    """Polls pred() until it returns a true value; returns the last value."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 - transient kubectl failures
            last = None
            err = e
        if last:
            return last
        time.sleep(interval)
    return last


def node_labels(name):
    n = kj("get", "node", name, check=False)
    return (n or {}).get("metadata", {}).get("labels", {})


def nmc(name):
    return kj("get", "nodemodulesconfigs.kmm.sigs.x-k8s.io", name, "--ignore-not-found")


def nmc_entry(name, part, ns, mod):
    o = nmc(name)
    if not o:
        return None
    for e in (o.get(part) or {}).get("modules") or []:
        if e.get("namespace") == ns and e.get("name") == mod:
            return e
    return None


def module(ns, name):
    return kj("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, name, "--ignore-not-found")


def ready_label(ns, mod):
    return f"kmm.node.kubernetes.io/{ns}.{mod}.ready"


def module_obj(ns, name, selector, mappings, **container):
    c = {"modprobe": container.pop("modprobe", {"moduleName": name.replace("-", "_")}),
         "kernelMappings": mappings}
    c.update(container)
    spec = {"selector": selector, "moduleLoader": {"container": c}}
    return {"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "Module",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def push_image(ref, kernels, files=("mod.ko",), firmware=None):
    """A kmod image with /opt/lib/modules/<kernel>/<files> (and a firmware dir)."""
    with tempfile.TemporaryDirectory() as d:
        for k in kernels:
            kd = os.path.join(d, "opt", "lib", "modules", k)
            os.makedirs(kd, exist_ok=True)
            for f in files:
                with open(os.path.join(kd, f), "w") as fh:
                    fh.write("not really a module\n")
        if firmware:
            fd = os.path.join(d, firmware.lstrip("/"))
            os.makedirs(fd, exist_ok=True)
            with open(os.path.join(fd, "fw.bin"), "w") as fh:
                fh.write("fw\n")
        testenv("image", "push", d, ref)
    return f"{os.environ['KMM_TESTENV_REGISTRY']}/{ref}"


class Operator:
    """One kmm-operator process with its own config file and log."""

    def __init__(self, name, namespace, leader=False, extra_env=None, lease=None,
                 extra_config=()):
        self.name = name
        self.log = os.path.join(os.environ.get("KMM_TEST_LOG_DIR", tempfile.gettempdir()),
                                f"kmm-operator-{name}-{os.getpid()}.log")
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        lines = ["healthProbeBindAddress: 127.0.0.1:0",
                 "metrics:", "  bindAddress: 127.0.0.1:0",
                 "leaderElection:", f"  enabled: {'true' if leader else 'false'}"]
        if lease:
            lines.append(f"  resourceID: {lease}")
        lines.extend(extra_config)
        self.cfg.write("\n".join(lines) + "\n")
        self.cfg.close()
        self.env = dict(os.environ, OPERATOR_NAMESPACE=namespace,
                        RELATED_IMAGE_WORKER="registry.example/kmm-worker:test",
                        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        self.env.update(extra_env or {})
        self.proc = None

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([OPERATOR, "--config-file", self.cfg.name],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self

    def ports(self):
        def find():
            with open(self.log) as f:
                for line in f:
                    m = re.search(r"healthPort=(\d+) metricsPort=(\d+)", line)
                    if m:
                        return int(m.group(1)), int(m.group(2))
            return None
        return wait(find, 30)

    def get(self, path):
        hp, mp = self.ports()
        port = mp if path == "/metrics" else hp
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PodWatch:
    """Every worker pod object seen in a namespace, as first created."""

    def __init__(self, namespace, selector="kmm.node.kubernetes.io/worker-action"):
        self.pods = {}
        self.events = []
        self.proc = subprocess.Popen(
            ["kubectl", "get", "pods", "-n", namespace, "-l", selector,
             "-w", "-o", "json", "--output-watch-events"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        time.sleep(2)  # kubectl establishes its watch; nothing tells us when

    def _read(self):
        dec = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while True:
                s = buf.lstrip()
                if not s:
                    buf = ""
                    break
                try:
                    obj, end = dec.raw_decode(s)
                except ValueError:
                    break
                buf = s[end:]
                o = obj.get("object", {})
                name = o.get("metadata", {}).get("name")
                self.events.append((obj.get("type"), o))
                if obj.get("type") == "ADDED" and name and name not in self.pods:
                    self.pods[name] = o

    def created(self, action=None, node=None):
        out = []
        for _, o in list(self.events):
            if _ != "ADDED":
                continue
            lab = o["metadata"].get("labels", {})
            if action and lab.get("kmm.node.kubernetes.io/worker-action") != action:
                continue
            if node and o["spec"].get("nodeName") != node:
                continue
            out.append(o)
        return out

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def worker_pods(ns):
    return kj("get", "pods", "-n", ns, "-l", "kmm.node.kubernetes.io/worker-action")["items"]


def cleanup_namespace(ns, nodes):
    """Deletes the Modules (the operator unloads) and the nodes of a case."""
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "--all", "-n", ns, "--wait=false",
            "--ignore-not-found", check=False)


def force_cleanup(ns, nodes):
    """Without an operator: strip finalizers and delete everything of a case."""
    mods = kj("get", "modules.kmm.sigs.x-k8s.io", "-n", ns, check=False) or {"items": []}
    for m in mods["items"]:
        kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, m["metadata"]["name"],
                "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    pods = kj("get", "pods", "-n", ns, check=False) or {"items": []}
    for p in pods["items"]:
        kubectl("patch", "pod", "-n", ns, p["metadata"]["name"], "--type=merge", "-p",
                '{"metadata":{"finalizers":null}}', check=False)
    kubectl("delete", "ns", ns, "--wait=false", "--ignore-not-found", check=False)
    if nodes:
        run(TESTENV, "nodes", "remove", *nodes, check=False, timeout=300)
        for n in nodes:
            kubectl("delete", "nodemodulesconfigs.kmm.sigs.x-k8s.io", n, "--ignore-not-found",
                    "--wait=false", check=False)


class Suite:
    """One test file's cases, and the simulated nodes and namespaces they
    created (each file removes them at the end)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.cases = []
        self.nodes = []
        self.namespaces = []

    def case(self, fn):
        self.cases.append(fn)
        return fn

    def add_nodes(self, prefix, count, kernel=None, labels=()):
        args = ["nodes", "add", prefix, "--count", str(count), "--kernel", kernel or self.kernel]
        for lab in labels:
            args += ["--label", lab]
        testenv(*args)
        names = [f"{prefix}-{i}" for i in range(1, count + 1)]
        self.nodes.extend(names)
        return names

    def new_ns(self, ns):
        kubectl("create", "namespace", ns)
        self.namespaces.append(ns)
        return ns


def kmm_get(kind, ns, name):
    """A kmm object (kind plural: modules, moduleimagesconfigs, ...) or None."""
    return kj("get", f"{kind}.kmm.sigs.x-k8s.io", "-n", ns, name, "--ignore-not-found")


def mic_state(ns, name, image):
    o = kmm_get("moduleimagesconfigs", ns, name) or {}
    for s in (o.get("status") or {}).get("imagesStates") or []:
        if s.get("image") == image:
            return s.get("status")
    return None


def events(ns, name, reason):
    return kj("get", "events", "-n", ns, "--field-selector",
              f"involvedObject.name={name},reason={reason}")["items"]


def condition(ns, mod, ctype):
    for c in ((module(ns, mod) or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def ready_on(ns, mod, nodes):
    return all(ready_label(ns, mod) in node_labels(n) for n in nodes)


def start_operator(t, name, namespace, namespaces):
    """An operator in a namespace of its own (cleaned up with the case namespaces), trusting
    the testenv registry's CA, started with its probes bound."""
    kubectl("create", "namespace", namespace, check=False)
    namespaces.append(namespace)
    ca = os.environ.get("KMM_TESTENV_REGISTRY_TLS_CA", "")
    op = Operator(name, namespace, extra_config=[f"registryCAFile: {ca}"]).start()
    t.ok(op.ports() is not None, "operator: started", op.logtext()[-2000:])
    return op


def run_cases(t, cases, *args):
    """Runs each case; one that raises is a failure, and the others still run."""
    for fn in cases:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one broken case must not hide the others
            t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())


def stop_checked(t, op):
    """Stops op with SIGTERM: it exits 0, and its log has no sanitizer report."""
    rc = op.stop()
    t.ok(rc == 0, "operator: SIGTERM exits 0", op.logtext()[-3000:])
    san = [ln for ln in op.logtext().splitlines()
           if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
    t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))


def finish(t, namespaces, nodes, none_ns):
    """Cleans up every case namespace and node (through the namespace none_ns), then ends the TAP."""
    for ns in namespaces:
        force_cleanup(ns, [])
    force_cleanup(none_ns, nodes)
    return t.finish()
