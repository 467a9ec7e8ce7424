#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Upgrading kmm keeps every loaded module loaded, and uninstalling leaves
nothing, on the testenv. The install is deploy/ (with loopback webhook URLs:
simulated nodes run no pods, so kmm-webhook and kmm-operator run on the host,
each under the install's own ServiceAccount, as the Deployments would). A
Module is loaded on two nodes; the install is re-applied with new image tags
and the operator restarted from the new Deployment's RELATED_IMAGE_WORKER, as
a rollout does (SIGTERM), then killed (SIGKILL) and started again, as a crash
or a node drain does: no unloader, no new loader, ready labels and NMC status
untouched, the Module Ready throughout. Then docs/install.md's uninstall:
Modules deleted while the operator runs (unloaded, labels and finalizers
gone), kubectl delete -k: nothing of kmm is left, on nodes neither."""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploylib import (NS, Tap, Webhook, free_port, kj, kubectl, leftovers,  # noqa: E402
                       preflight, run_suite, sa_kubeconfig, uninstall_kustomize, wait,
                       write_overlay)
from oplib import (Operator, PodWatch, apply, module, module_obj, nmc_entry,  # noqa: E402
                   node_labels, push_image, ready_label, testenv)
import oplib  # noqa: E402

t = Tap()
TMP = tempfile.mkdtemp(prefix="kmm-deploy-upgrade-")
LOGDIR = os.environ.get("KMM_TEST_LOG_DIR", TMP)
K1 = "6.1.0-18-amd64"
MODNS = f"kmm-deploy-up-{os.getpid()}"
PREFIX = f"kmm-deploy-up-{os.getpid()}"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
NODES = []
procs = []
had_crds = False


def images(tag):
    return [{"name": n, "newName": f"registry.example/kmm/{n}", "newTag": tag}
            for n in ("kmm-operator", "kmm-webhook", "kmm-worker", "kmm-sign", "kmm-builder")]


def deployed_worker_image():
    dep = kj("get", "deployment", "-n", NS, "kmm-operator-controller")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "RELATED_IMAGE_WORKER")


def operator(name, worker_image, kubeconfig):
    op = Operator(name, NS, extra_env={"RELATED_IMAGE_WORKER": worker_image,
                                       "KUBECONFIG": kubeconfig})
    op.log = os.path.join(LOGDIR, f"kmm-operator-deploy-{name}-{os.getpid()}.log")
    procs.append(op)
    return op.start()


def kmm_labels(n):
    return {k: v for k, v in node_labels(n).items() if "kmm.node." in k}


def state():
    """What a restart must not change: per node, the NMC status entry and the labels."""
    out = {}
    for n in NODES:
        e = nmc_entry(n, "status", MODNS, "drv") or {}
        labs = kmm_labels(n)
        out[n] = (e.get("config"), e.get("bootId"), e.get("lastTransitionTime"), labs)
    return out


def ready():
    c = [x for x in ((module(MODNS, "drv") or {}).get("status") or {}).get("conditions") or []
         if x.get("type") == "Ready"]
    return bool(c) and c[0].get("status") == "True"


def steady(op, before, w, seconds=15):
    """For `seconds`: the operator lives, no worker pod is created, nothing moves."""
    end = time.time() + seconds
    while time.time() < end:
        if not op.alive() or w.created() or state() != before or not ready():
            return False
        time.sleep(1)
    return True


def main():
    global had_crds
    preflight()
    if not os.access(oplib.OPERATOR, os.X_OK):
        raise RuntimeError(f"{oplib.OPERATOR} not built")
    had_crds = kj("get", "crd", "modules.kmm.sigs.x-k8s.io", "--ignore-not-found",
                  check=False) is not None
    port = free_port()
    overlay = write_overlay(os.path.join(TMP, "overlay"), port, images=images("v1"))
    out = kubectl("apply", "--server-side", "--force-conflicts", "-k", overlay, check=False)
    t.ok("deployment.apps/kmm-operator-controller serverside-applied" in out,
         "the install (tag v1) is applied", out)
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/modules.kmm.sigs.x-k8s.io", "crd/nodemodulesconfigs.kmm.sigs.x-k8s.io")
    os.makedirs(os.path.join(TMP, "certs"))
    wh = Webhook(port, sa_kubeconfig(os.path.join(TMP, "webhook.kubeconfig")),
                 os.path.join(TMP, "certs"), os.path.join(LOGDIR, f"kmm-webhook-up-{os.getpid()}.log"))
    procs.append(wh.start())
    t.ok(wh.listening(), "kmm-webhook runs (its own ServiceAccount)", wh.logtext()[-1000:])
    op_kc = sa_kubeconfig(os.path.join(TMP, "operator.kubeconfig"), sa="kmm-operator-controller")
    v1 = deployed_worker_image()
    op = operator("a", v1, op_kc)
    t.ok(op.ports() is not None, f"kmm-operator runs as kmm-operator-controller with {v1}",
         op.logtext()[-1500:])

    testenv("nodes", "add", PREFIX, "--count", "2", "--kernel", K1)
    NODES.extend([f"{PREFIX}-1", f"{PREFIX}-2"])
    for n in NODES:
        kubectl("label", "node", n, f"{PREFIX}=yes")
    push_image(f"{PREFIX}/drv:{K1}", [K1])
    kubectl("create", "namespace", MODNS)
    w = PodWatch(MODNS)
    apply(module_obj(MODNS, "drv", {PREFIX: "yes"},
                     [{"regexp": "^.+$", "containerImage": f"{REG}/{PREFIX}/drv:{K1}",
                       "registryTLS": {"insecure": True}}]))
    # The ready labels come before the status write that says Ready: wait for both.
    loaded = wait(lambda: all(ready_label(MODNS, "drv") in node_labels(n) for n in NODES)
                  and ready(), 90)
    t.ok(loaded and ready(), "the Module is loaded on both nodes, Ready", op.logtext()[-1500:])
    wait(lambda: not kj("get", "pods", "-n", MODNS)["items"], 30)
    w.close()
    before = state()
    loads = len(w.created("Load"))

    # The upgrade: new tags re-applied, the operator rolled (SIGTERM, start from the new env).
    out = kubectl("apply", "--server-side", "--force-conflicts", "-k",
                  write_overlay(os.path.join(TMP, "overlay"), port, images=images("v2")),
                  check=False)
    v2 = deployed_worker_image()
    t.ok(v2 == "registry.example/kmm/kmm-worker:v2" and
         module(MODNS, "drv") is not None,
         "re-applying the install with tag v2 changes RELATED_IMAGE_WORKER, keeps the Module",
         (v2, out))
    w = PodWatch(MODNS)
    rc = op.stop()
    t.ok(rc == 0, "the old operator exits 0 on SIGTERM", op.logtext()[-1500:])
    t.ok(state() == before, "while no operator runs nothing changes")
    op = operator("b", v2, op_kc)
    t.ok(op.ports() is not None, "the new operator starts with the v2 worker image")
    wait(lambda: "caches synced" in op.logtext() or "started" in op.logtext(), 30)
    t.ok(steady(op, before, w, 20),
         "after the rollout: no unloader, no new loader, NMC status and labels unchanged, "
         "Ready, for 20 s", (w.created(), state(), before))

    # A crash (or an eviction) and a restart: the same.
    op.proc.kill()
    op.proc.wait()
    op = operator("c", v2, op_kc)
    t.ok(op.ports() is not None and steady(op, before, w, 15),
         "after SIGKILL and a restart: still loaded, nothing unloaded or reloaded",
         (w.created(), state(), before))
    w.close()
    t.ok(len(w.created("Load")) == 0 and loads >= 2, "loaders only for the first load",
         (loads, len(w.created("Load"))))

    # docs/install.md: uninstall. 1. Modules first, with the operator running.
    w = PodWatch(MODNS)
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "--all", "-A", "--wait=false")
    unloaded = wait(lambda: module(MODNS, "drv") is None and
                    all(not kmm_labels(n) for n in NODES), 90)
    t.ok(unloaded and len(w.created("Unload")) == 2,
         "uninstall step 1: Modules deleted while the operator runs are unloaded from every "
         "node, their ready labels and finalizers gone", ([kmm_labels(n) for n in NODES], len(w.created("Unload"))))
    w.close()
    t.ok(wait(lambda: "kmm.node.k8s.io/contains-modules" not in
              (kj("get", "ns", MODNS)["metadata"].get("labels") or {}), 30),
         "uninstall step 1: the namespace is no longer guarded (label removed)")
    # 2. stop kmm (here: the host processes), 3. kubectl delete -k
    for p in procs:
        p.stop()
    gone = uninstall_kustomize(overlay)
    t.ok(gone, "uninstall step 3: kubectl delete -k leaves nothing of kmm", leftovers())
    t.ok(all(not kmm_labels(n) for n in NODES) and
         not kubectl("get", "pods", "-n", MODNS, "-o", "name", check=False).strip(),
         "no kmm label on any node, no worker pod left")


def cleanup():
    for p in procs:
        p.stop()
    san = []
    for p in procs:
        if isinstance(p, Operator):
            san += [ln for ln in p.logtext().splitlines()
                    if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln]
    t.ok(not san, "no sanitizer reports from the operators", "\n".join(san[:20]))
    oplib.force_cleanup(MODNS, NODES)


sys.exit(run_suite(t, main, TMP, lambda: had_crds, cleanup))
