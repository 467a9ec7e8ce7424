#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# kmm's hub and spoke end to end with real parts (docs/hub-spoke.md, "Tested
# end to end"): a hub and two spoke testenvs this suite starts and stops
# itself, joined by OCM's own registration and work agents (tests/env/ocm);
# kmm-operator --hub on the hub and kmm-operator KMM_MANAGED=1 on each spoke,
# each with its install's RBAC only; kwok nodes with different kernels in each
# spoke; kmod images in the hub's registry. A ManagedClusterModule reaches
# both spokes through ManifestWorks pinned by digest and loads there; the
# spokes' status comes back; a kernel change on a spoke's node goes to the
# hub and out again; unselecting a cluster and deleting the MCM remove the
# spoke Modules. Prints TAP.
#
# KMM_OCM_TESTENV_PREFIX=/tmp/kmm-e2e runs in PREFIX-hub, PREFIX-s1, PREFIX-s2
# (default: three directories under a new temporary one).
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hublib  # noqa: E402
from hublib import CLAIM, KERNEL_CLAIM, MC, MCM, MCM_LABEL, MIC, MW  # noqa: E402
import oplib  # noqa: E402
from oplib import wait  # noqa: E402

t = oplib.Tap()
SRC, BUILD = oplib.SRC, oplib.BUILD
TE = os.path.join(SRC, "tests", "env", "testenv")
OCM = os.path.join(SRC, "tests", "env", "ocm")
NAME = "e2ekmod"
HUB_NS = "kmm-hub-op"
OP_NS = "kmm-spoke-op"
SPOKE_NS = "kmm-e2e"
MODULE = "modules.kmm.sigs.x-k8s.io"
NMC = "nodemodulesconfigs.kmm.sigs.x-k8s.io"
K_OLD, K_NEW = "6.1.0-18-amd64", "6.8.0-1-amd64"
K_NONE = "6.12.0-9-amd64"  # no image for it
# spoke -> {node: kernel}
NODES = {"spoke1": {"e2e-s1-n1": K_OLD},
         "spoke2": {"e2e-s2-n1": K_NEW, "e2e-s2-n2": K_OLD}}
TIMES = {}

# The integration stage's shared testenv is not this suite's.
for v in ("KMM_TESTENV_DIR", "KUBECONFIG"):
    os.environ.pop(v, None)
if os.environ.get("KMM_OCM_TESTENV_PREFIX"):
    TOP = None
    P = os.environ["KMM_OCM_TESTENV_PREFIX"]
    DIRS = {"hub": P + "-hub", "spoke1": P + "-s1", "spoke2": P + "-s2"}
else:
    TOP = tempfile.mkdtemp(prefix="kmm-e2e.")
    DIRS = {"hub": os.path.join(TOP, "hub"), "spoke1": os.path.join(TOP, "s1"),
            "spoke2": os.path.join(TOP, "s2")}
SPOKES = ["spoke1", "spoke2"]


def run(*args, env=None, check=True, timeout=120, input=None):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                       env=env, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def te(cluster, *args, timeout=300):
    return run(TE, *args, env=dict(os.environ, KMM_TESTENV_DIR=DIRS[cluster]), timeout=timeout)


def k(cluster, *args, check=True, input=None):
    return run("kubectl", "--kubeconfig", os.path.join(DIRS[cluster], "kubeconfig"),
               "--request-timeout", "20s", *args, check=check, input=input)


def kj(cluster, *args):
    out = k(cluster, *args, "-o", "json")
    return json.loads(out) if out.strip() else None


def apply(cluster, obj):
    k(cluster, "apply", "-f", "-", input=json.dumps(obj))


def claim_on_hub(cluster):
    mc = kj("hub", "get", MC, cluster, "--ignore-not-found") or {}
    for c in (mc.get("status") or {}).get("clusterClaims") or []:
        if c.get("name") == KERNEL_CLAIM:
            return c.get("value")
    return None


def work(cluster):
    return kj("hub", "get", MW, "-n", cluster, NAME, "--ignore-not-found")


def literals(w):
    ms = (((w or {}).get("spec") or {}).get("workload") or {}).get("manifests") or []
    if len(ms) != 1:
        return {}
    c = ((ms[0].get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    return {m.get("literal"): m.get("containerImage") for m in c.get("kernelMappings") or []}


def spoke_module(cluster):
    return kj(cluster, "get", MODULE, "-n", SPOKE_NS, NAME, "--ignore-not-found")


def spoke_literals(cluster):
    m = spoke_module(cluster) or {}
    c = ((m.get("spec") or {}).get("moduleLoader") or {}).get("container") or {}
    return {x.get("literal"): x.get("containerImage") for x in c.get("kernelMappings") or []}


def loaded(cluster, nodes):
    """Every node's NMC status has the module loaded from the image of its kernel,
    and the Module counts them all available."""
    want = spoke_literals(cluster)
    for node, kernel in nodes.items():
        nmc = kj(cluster, "get", NMC, node, "--ignore-not-found") or {}
        e = next((e for e in (nmc.get("status") or {}).get("modules") or []
                  if e.get("namespace") == SPOKE_NS and e.get("name") == NAME), None)
        cfg = (e or {}).get("config") or {}
        if cfg.get("kernelVersion") != kernel or not want.get(kernel) \
                or cfg.get("containerImage") != want[kernel]:
            return False
    st = (((spoke_module(cluster) or {}).get("status") or {}).get("moduleLoader") or {})
    return st.get("availableNumber") == len(nodes) and st.get("desiredNumber") == len(nodes)


def feedback(cluster, name="moduleLoader.availableNumber"):
    w = work(cluster) or {}
    for m in (w.get("status") or {}).get("resourceStatus", {}).get("manifests") or []:
        if (m.get("resourceMeta") or {}).get("kind") != "Module":
            continue
        for v in (m.get("statusFeedback") or {}).get("values") or []:
            if v.get("name") == name:
                return (v.get("fieldValue") or {}).get("integer")
    return None


def mcm_status():
    return (kj("hub", "get", MCM, NAME, "--ignore-not-found") or {}).get("status") or {}


def ready():
    for c in mcm_status().get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status"), c.get("reason")
    return None


def mcm_obj(selector):
    reg = ENV["hub"]["KMM_TESTENV_REGISTRY"]
    return {"apiVersion": "hub.kmm.sigs.x-k8s.io/v1beta1", "kind": "ManagedClusterModule",
            "metadata": {"name": NAME},
            "spec": {"spokeNamespace": SPOKE_NS, "selector": selector,
                     "moduleSpec": {"selector": {"kubernetes.io/os": "linux"},
                                    "moduleLoader": {"container": {
                                        "modprobe": {"moduleName": NAME},
                                        "registryTLS": {"insecure": True},
                                        "kernelMappings": [{
                                            "regexp": "^.+$",
                                            "containerImage":
                                                reg + "/e2e/kmod:${KERNEL_FULL_VERSION}"}]}}}}}


ENV = {}
OPS = []
SAS = []


def testenv_env(cluster):
    out = te(cluster, "env")
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, val = line[len("export "):].split("=", 1)
            env[key] = val.strip("'\"")
    return env


def push(kernel):
    with tempfile.TemporaryDirectory() as d:
        kd = os.path.join(d, "opt", "lib", "modules", kernel)
        os.makedirs(kd)
        with open(os.path.join(kd, NAME + ".ko"), "w") as f:
            f.write(f"not really a module for {kernel}\n")
        out = te("hub", "image", "push", d, f"e2e/kmod:{kernel}")
    d = [w for w in out.split() if w.startswith("sha256:")]
    return d[-1] if d else None


def start_operator(cluster, name, ns, role_files, args=(), extra_env=None):
    """kmm-operator against cluster, as a ServiceAccount bound to the install's ClusterRoles."""
    os.environ["KUBECONFIG"] = os.path.join(DIRS[cluster], "kubeconfig")
    try:
        k(cluster, "create", "ns", ns, check=False)
        sa = hublib.ServiceAccount(ns, name, [os.path.join(SRC, "deploy", *f.split("/"))
                                              for f in role_files])
    finally:
        os.environ.pop("KUBECONFIG", None)
    SAS.append((cluster, sa))
    env = {"KUBECONFIG": sa.kubeconfig}
    env.update(extra_env or {})
    op = hublib.Operator(f"e2e-{name}", ns, args=args, extra_env=env)
    op.start()
    OPS.append((cluster, op))
    return op


def teardown():
    for cluster, op in OPS:
        st = op.stop(15)
        text = op.logtext()
        t.ok(st == 0, f"{cluster}: kmm-operator stops cleanly on SIGTERM", text[-2000:])
        forb = [x for x in text.splitlines() if "orbidden" in x]
        san = [x for x in text.splitlines() if "ERROR: AddressSanitizer" in x
               or "runtime error:" in x or "LeakSanitizer" in x]
        t.ok(not forb and not san,
             f"{cluster}: the install's RBAC allowed every request; no sanitizer report",
             "\n".join((forb + san)[:20]))
    for cluster, sa in SAS:
        try:
            os.unlink(sa.kubeconfig)
        except OSError:
            pass
    run(OCM, "down", DIRS["hub"], check=False)
    procs = []
    for c in ("spoke2", "spoke1", "hub"):
        if os.path.isdir(DIRS[c]):
            procs.append(subprocess.Popen([TE, "down"],
                                          env=dict(os.environ, KMM_TESTENV_DIR=DIRS[c]),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait()


def on_signal(signum, _frame):
    """A timeout's SIGTERM: a failed case, then the teardown (finally) as on any failure."""
    t.ok(False, f"interrupted by signal {signum}")
    raise KeyboardInterrupt


def main():
    if not SRC or not BUILD:
        oplib.bail("KMM_SOURCE_DIR and KMM_BUILD_DIR must be set (run under tests/run)")
    if not os.access(oplib.OPERATOR, os.X_OK):
        oplib.bail(f"{oplib.OPERATOR} not built")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bindir = run(TE, "paths").split("bin=")[1].split()[0]
    os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]
    try:
        cases()
    except KeyboardInterrupt:
        pass
    finally:
        teardown()
        if t.failed == 0 and TOP:
            shutil.rmtree(TOP, ignore_errors=True)
        elif t.failed:
            t.diag(f"logs kept in {', '.join(os.path.join(d, 'logs') for d in DIRS.values())}"
                   f" and the operators' logs {', '.join(op.log for _, op in OPS)}")


def cases():
    t0 = time.time()
    out = run(OCM, "build", timeout=3600)
    t.ok(True, f"OCM's registration and work agents built ({time.time() - t0:.0f} s)", out)

    # Three control planes at once.
    t0 = time.time()
    procs = {c: subprocess.Popen([TE, "up"], env=dict(os.environ, KMM_TESTENV_DIR=d),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c, d in DIRS.items()}
    outs = {c: p.communicate()[0] for c, p in procs.items()}
    bad = {c: o[-1500:] for c, o in outs.items() if procs[c].returncode != 0}
    TIMES["up"] = time.time() - t0
    if not t.ok(not bad, f"hub and two spoke testenvs up ({TIMES['up']:.0f} s)", bad):
        raise RuntimeError("no control planes")
    for c in DIRS:
        ENV[c] = testenv_env(c)

    t0 = time.time()
    p = subprocess.run([OCM, "up", DIRS["hub"], f"spoke1={DIRS['spoke1']}",
                        f"spoke2={DIRS['spoke2']}"], capture_output=True, text=True, timeout=600)
    TIMES["join"] = time.time() - t0
    if not t.ok(p.returncode == 0, f"ocm up: spoke1 and spoke2 joined ({TIMES['join']:.0f} s)",
                p.stdout + p.stderr):
        raise RuntimeError("OCM did not come up")

    # kmm's CRDs everywhere, the hub's on the hub; namespaces; images; nodes.
    crd = os.path.join(SRC, "deploy", "crd")
    for c in DIRS:
        k(c, "apply", "--server-side", "--force-conflicts", "-k", crd)
    k("hub", "apply", "--server-side", "--force-conflicts", "-k", os.path.join(crd, "hub"))
    for c in DIRS:
        k(c, "wait", "--for=condition=Established", "--timeout=60s",
          f"crd/{MODULE}", f"crd/{NMC}", f"crd/{MIC}")
    k("hub", "wait", "--for=condition=Established", "--timeout=60s", f"crd/{MCM}")
    for c in SPOKES:
        k(c, "create", "ns", SPOKE_NS)
    digests = {kern: push(kern) for kern in (K_OLD, K_NEW)}
    t.ok(all(digests.values()), "kmod images for both kernels pushed to the hub's registry",
         digests)
    for c in SPOKES:
        for node, kern in NODES[c].items():
            te(c, "nodes", "add", node, "--kernel", kern)

    t_ops = time.time()
    hub = start_operator("hub", "hub", HUB_NS, ["rbac/role.yaml", "hub/rbac.yaml"],
                         args=["--hub"], extra_env={"RELATED_IMAGE_WORKER": ""})
    spokes = {c: start_operator(c, c, OP_NS, ["rbac/role.yaml", "spoke/rbac.yaml"],
                                extra_env={"KMM_MANAGED": "1"}) for c in SPOKES}
    t.ok(wait(lambda: "mode=hub" in hub.logtext(), 60)
         and all(wait(lambda: "mode=spoke" in op.logtext(), 60) for op in spokes.values()),
         "kmm-operator runs as the hub on the hub and as a spoke on each spoke",
         hub.logtext()[-1500:] + "".join(op.logtext()[-1500:] for op in spokes.values()))

    # 1: each spoke's claim, from kmm's spoke mode through OCM's registration agent.
    want = {c: "\n".join(sorted(set(NODES[c].values()))) for c in SPOKES}
    got = wait(lambda: all(claim_on_hub(c) == want[c] for c in SPOKES) or None, 60)
    t.ok(got, f"each spoke's ClusterClaim {KERNEL_CLAIM} reaches its ManagedCluster on the hub "
         f"({time.time() - t_ops:.0f} s after the operators started)",
         {c: (claim_on_hub(c), kj(c, "get", CLAIM, KERNEL_CLAIM, "--ignore-not-found"))
          for c in SPOKES})

    # 2: an MCM selecting both clusters.
    for c in SPOKES:
        k("hub", "label", MC, c, "kmm-e2e=yes", "--overwrite")
    t0 = time.time()
    apply("hub", mcm_obj({"kmm-e2e": "yes"}))
    reg = ENV["hub"]["KMM_TESTENV_REGISTRY"]
    pinned = {kern: f"{reg}/e2e/kmod@{digests[kern]}" for kern in (K_OLD, K_NEW)}
    want_lit = {c: {kern: pinned[kern] for kern in set(NODES[c].values())} for c in SPOKES}
    ok = wait(lambda: all(literals(work(c)) == want_lit[c] for c in SPOKES), 60)
    t.ok(ok, "a ManifestWork per cluster: one literal mapping per kernel of that cluster, "
         "pinned by digest", {c: literals(work(c)) for c in SPOKES})
    mods = [(work(c) or {}).get("spec", {}).get("workload", {}).get("manifests", [{}])[0]
            for c in SPOKES]
    t.ok(all("build" not in json.dumps(m) and "\"sign\"" not in json.dumps(m)
             and "regexp" not in json.dumps(m) for m in mods),
         "the spoke Modules carry no build, sign or regexp", json.dumps(mods)[:3000])
    ok = wait(lambda: all(spoke_literals(c) == want_lit[c] for c in SPOKES), 60)
    t.ok(ok, f"the work agents apply Module {SPOKE_NS}/{NAME} on each spoke",
         {c: spoke_literals(c) for c in SPOKES})
    ok = wait(lambda: all(loaded(c, NODES[c]) for c in SPOKES), 90)
    TIMES["mcm"] = time.time() - t0
    t.ok(ok, f"the spoke operators load it on every kwok node of both spokes "
         f"(MCM apply to loaded: {TIMES['mcm']:.0f} s)",
         {c: (kj(c, "get", NMC) or {}).get("items") for c in SPOKES})
    counters = ("nodesMatchingSelectorNumber", "desiredNumber", "availableNumber")
    ok = wait(lambda: all(feedback(c, f"moduleLoader.{n}") == len(NODES[c])
                          for c in SPOKES for n in counters), 60)
    t.ok(ok, "status feedback: each ManifestWork on the hub reports the spoke Module's "
         "counters (nodes matching, desired, available)",
         {c: (work(c) or {}).get("status") for c in SPOKES})
    mics = {c: sorted(i["kernelVersion"] for i in (kj("hub", "get", MIC, "-n", HUB_NS,
                                                        f"{NAME}-{c}", "--ignore-not-found")
                                                     or {}).get("spec", {}).get("images", []))
            for c in SPOKES}
    t.ok(mics == {c: sorted(set(NODES[c].values())) for c in SPOKES},
         "the hub's MIC per cluster lists that cluster's kernels", mics)
    ok = wait(lambda: mcm_status().get("numberDesired") == 2
              and mcm_status().get("numberApplied") == 2
              and not mcm_status().get("numberDegraded") and ready() == ("True", "Applied"), 60)
    t.ok(ok, "the MCM's status: 2 desired, 2 applied, none degraded, Ready True (Applied)",
         mcm_status())

    # The work agent writes status (feedback every 2 s), which reconciles the MCM:
    # the hub must not rewrite what it sent.
    gens = {c: (work(c) or {}).get("metadata", {}).get("generation") for c in SPOKES}
    time.sleep(6)
    now = {c: (work(c) or {}).get("metadata", {}).get("generation") for c in SPOKES}
    t.ok(gens == now and all(gens.values()),
         "the hub leaves its ManifestWorks alone while the spokes report status "
         "(generations unchanged over 6 s)", f"before {gens}, after {now}")

    # A spoke node on a kernel with no image (and no build): the hub says so, naming
    # the cluster and the image, and spoke2 keeps what it has; the node gone, all is well.
    te("spoke2", "nodes", "add", "e2e-s2-n3", "--kernel", K_NONE)
    missing = f"{reg}/e2e/kmod:{K_NONE}"
    cond = wait(lambda: next((c for c in mcm_status().get("conditions") or []
                              if c.get("type") == "Ready" and c.get("reason") == "Failed"
                              and "spoke2" in c.get("message", "")
                              and missing in c.get("message", "")), None), 60)
    t.ok(cond and cond["status"] == "False",
         "a kernel with no image on spoke2: Ready False (Failed) naming spoke2 and the image",
         mcm_status())
    t.ok(literals(work("spoke2")) == want_lit["spoke2"] and loaded("spoke2", NODES["spoke2"]),
         "spoke2 keeps its ManifestWork and its loaded nodes", literals(work("spoke2")))
    te("spoke2", "nodes", "remove", "e2e-s2-n3")
    t.ok(wait(lambda: ready() == ("True", "Applied"), 60),
         "that node removed: Ready True (Applied) again", mcm_status())

    # 3: a kernel change on spoke1's node flows to the hub and back.
    node = "e2e-s1-n1"
    t0 = time.time()
    te("spoke1", "nodes", "upgrade", node, "--kernel", K_NEW, "--down-for", "1")
    NODES["spoke1"][node] = K_NEW
    ok = wait(lambda: claim_on_hub("spoke1") == K_NEW, 60)
    t.ok(ok, f"kernel change: spoke1's claim on the hub says {K_NEW} ({time.time() - t0:.0f} s)",
         claim_on_hub("spoke1"))
    ok = wait(lambda: literals(work("spoke1")) == {K_NEW: pinned[K_NEW]}, 60)
    t.ok(ok, "the hub's ManifestWork for spoke1 maps the new kernel only",
         literals(work("spoke1")))
    ok = wait(lambda: spoke_literals("spoke1") == {K_NEW: pinned[K_NEW]}, 60)
    t.ok(ok, "spoke1's Module follows", spoke_literals("spoke1"))
    ok = wait(lambda: loaded("spoke1", NODES["spoke1"]), 90)
    TIMES["kernel"] = time.time() - t0
    t.ok(ok, f"loaded on the new kernel (kernel change to reloaded: {TIMES['kernel']:.0f} s)",
         kj("spoke1", "get", NMC, node))
    t.ok(literals(work("spoke2")) == want_lit["spoke2"], "spoke2's ManifestWork is unchanged",
         literals(work("spoke2")))

    # 4: unselect spoke2, then delete the MCM.
    t0 = time.time()
    k("hub", "label", MC, "spoke2", "kmm-e2e=no", "--overwrite")
    ok = wait(lambda: work("spoke2") is None, 60)
    t.ok(ok, "spoke2 unselected: its ManifestWork is removed")
    ok = wait(lambda: spoke_module("spoke2") is None, 90)
    t.ok(ok, f"and the Module is gone from spoke2 ({time.time() - t0:.0f} s)",
         spoke_module("spoke2"))
    ok = wait(lambda: not any(e.get("name") == NAME for n in kj("spoke2", "get", NMC)["items"]
                              for part in ("spec", "status")
                              for e in (n.get(part) or {}).get("modules") or []), 60)
    t.ok(ok, "spoke2's operator unloaded it: no NMC lists it", kj("spoke2", "get", NMC))
    t.ok(wait(lambda: kj("hub", "get", MIC, "-n", HUB_NS, f"{NAME}-spoke2",
                         "--ignore-not-found") is None
              and mcm_status().get("numberDesired") == 1
              and mcm_status().get("numberApplied") == 1 and ready() == ("True", "Applied"), 30),
         "the hub dropped spoke2's MIC; the MCM counts 1 ManifestWork, applied, Ready",
         mcm_status())
    t.ok(spoke_module("spoke1") is not None and work("spoke1") is not None,
         "spoke1 keeps its ManifestWork and Module")
    t0 = time.time()
    k("hub", "delete", MCM, NAME, "--wait=false")
    ok = wait(lambda: not kj("hub", "get", MW, "-A", "-l", f"{MCM_LABEL}={NAME}")["items"]
              and not kj("hub", "get", MIC, "-n", HUB_NS, "-l", f"{MCM_LABEL}={NAME}")["items"]
              and kj("hub", "get", MCM, NAME, "--ignore-not-found") is None, 60)
    t.ok(ok, "MCM deleted: its ManifestWorks and MICs are gone from the hub")
    ok = wait(lambda: all(spoke_module(c) is None for c in SPOKES), 90)
    t.ok(ok, f"and the Modules from both spokes ({time.time() - t0:.0f} s)",
         {c: spoke_module(c) for c in SPOKES})
    t.diag("wall times: " + ", ".join(f"{key} {v:.0f} s" for key, v in TIMES.items()))


if __name__ == "__main__":
    hublib.run_main(t, main)
