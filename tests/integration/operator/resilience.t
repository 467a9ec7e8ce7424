#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator killed mid-rollout on 200 simulated nodes converges with no
duplicate or orphan pods; two replicas elect one leader and fail over."""

import collections
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, PodWatch, Tap, apply, force_cleanup, kj, kubectl,  # noqa: E402
                   module, module_obj, preflight, push_image, ready_label, testenv, wait)

K1 = "6.1.0-18-amd64"
N = int(os.environ.get("KMM_OP_RESILIENCE_NODES", "200"))
NS = "op-rs"
SYS = "op-rs-system"
LEASE = "op-rs-lease"
t = Tap()


def ready_count():
    lab = ready_label(NS, "rs")
    nodes = kj("get", "nodes", "-l", "op-rs/sel=yes")["items"]
    return sum(1 for n in nodes if lab in n["metadata"].get("labels", {}))


def holder():
    le = kj("get", "lease", "-n", SYS, LEASE, check=False)
    return ((le or {}).get("spec") or {}).get("holderIdentity")


def sigkill_mid_rollout(ops):
    img = push_image("op-rs/rs:" + K1, [K1])
    w = PodWatch(NS)
    a = Operator("rs-a", SYS, leader=True, lease=LEASE).start()
    ops.append(a)
    t.ok(wait(lambda: "became leader" in a.logtext(), 30), "first replica becomes leader")
    m = module_obj(NS, "rs", {"op-rs/sel": "yes"},
                   [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}])
    apply(m)
    started = wait(lambda: len(w.created("Load")) >= N // 10, 60)
    a.kill()
    seen = len(w.created("Load"))
    t.ok(started and seen < N, f"operator SIGKILLed mid-rollout ({seen} of {N} loaders created)")
    b = Operator("rs-b", SYS, leader=True, lease=LEASE).start()
    ops.append(b)
    t0 = time.time()
    ok = wait(lambda: ready_count() == N, 240, interval=2)
    t.ok(ok, f"restarted operator converges: {N} nodes ready in {time.time() - t0:.0f} s "
         f"(includes the dead leader's lease expiry)", f"ready: {ready_count()}")
    per_node = collections.Counter(p["spec"]["nodeName"] for p in w.created("Load"))
    dups = {n: c for n, c in per_node.items() if c > 1}
    t.ok(not dups and len(per_node) == N, f"one loader per node, no duplicates ({len(per_node)} nodes)",
         f"duplicates: {dict(list(dups.items())[:10])}")
    left = wait(lambda: not kj("get", "pods", "-n", NS)["items"], 60)
    pods = kj("get", "pods", "-n", NS)["items"]
    t.ok(left is not None and not pods, "no orphan worker pods left", [p["metadata"]["name"] for p in pods][:10])
    st = wait(lambda: ((module(NS, "rs") or {}).get("status") or {}).get("moduleLoader", {}).get("availableNumber") == N, 60)
    t.ok(st, f"Module status availableNumber {N}", ((module(NS, "rs") or {}).get("status")))
    w.close()
    return b


def steady_state_quiet(b):
    def requests():
        _, body = b.get("/metrics")
        total = 0
        for line in body.splitlines():
            if line.startswith("rest_client_requests_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total
    r0 = requests()
    time.sleep(25)  # kwok heartbeats update every node in this window
    r1 = requests()
    t.ok(r1 == r0, f"steady state: no API writes in 25 s on {N} nodes ({r1 - r0:.0f})")


def failover(ops, b):
    c = Operator("rs-c", SYS, leader=True, lease=LEASE).start()
    ops.append(c)
    time.sleep(5)
    leaders = [o.name for o in (b, c) if "became leader" in o.logtext()]
    t.ok(leaders == ["rs-b"] and holder() and holder().startswith(os.uname().nodename),
         "two replicas: exactly one leader, holding the Lease", leaders)
    t.ok("waiting for leadership" in c.logtext() and c.alive(), "standby waits for the Lease")
    b.kill()
    ok = wait(lambda: "became leader" in c.logtext(), 40)
    t.ok(ok, "failover: standby becomes leader after the leader is SIGKILLed")
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", NS, "rs", "--wait=false")
    gone = wait(lambda: module(NS, "rs") is None, 240, interval=2)
    lab = ready_label(NS, "rs")
    left = sum(1 for n in kj("get", "nodes", "-l", "op-rs/sel=yes")["items"] if lab in n["metadata"]["labels"])
    t.ok(gone and left == 0, f"new leader unloads from all {N} nodes on delete", f"still labelled: {left}")
    rc = c.stop()
    t.ok(rc == 0 and not holder(), "leader SIGTERM: exits 0 and releases the Lease", c.logtext()[-1500:])


def main():
    preflight()
    ops = []
    kubectl("create", "namespace", NS, check=False)
    kubectl("create", "namespace", SYS, check=False)
    try:
        left = [n["metadata"]["name"] for n in kj("get", "nodes", "-l", "op-rs/sel=yes")["items"]]
        if left:  # an earlier run's cleanup did not finish
            testenv("nodes", "remove", *left)
        testenv("nodes", "add", "op-rs-n", "--count", str(N), "--label", "op-rs/sel=yes")
        b = sigkill_mid_rollout(ops)
        steady_state_quiet(b)
        failover(ops, b)
    except Exception:  # noqa: BLE001
        t.ok(False, "resilience: raised", traceback.format_exc())
    finally:
        for o in ops:
            o.kill()
        san = [ln for o in ops for ln in o.logtext().splitlines()
               if "AddressSanitizer" in ln or "runtime error:" in ln]
        t.ok(not san, "no sanitizer reports", "\n".join(san[:20]))
        force_cleanup(NS, [f"op-rs-n-{i}" for i in range(1, N + 1)])
        force_cleanup(SYS, [])
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
