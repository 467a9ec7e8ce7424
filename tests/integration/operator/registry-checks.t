#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's registry checks (imageCheck: registry, the default) against
hostile registries: one on 127.0.0.1 that accepts TCP connections and never
answers must not hold up Modules whose images live on the testenv's registry;
the cloud metadata address and configured denied networks are refused by the
destination policy, and the Module's status says so, short and printable.
One namespace per case (op-rc-*), one simulated node for all."""

import os
import socket
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, Suite, Tap, apply, condition, force_cleanup, kmm_get,  # noqa: E402
                   kubectl, mic_state, module_obj, preflight, push_image)
from oplib import wait  # noqa: E402

K1 = "6.1.0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
RUN = f"r{os.getpid()}"
SILENT_MODULES = 8  # twice the reconcile workers (--workers 4, the default)
NORMAL_S = 15  # a Module on a healthy registry converges well within this
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns
OPS = []
LABEL = "op-rc/target"


class SilentRegistry:
    """Accepts connections on 127.0.0.1 and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted_at = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.5)
        while not self.stopped:
            try:
                self.conns.append(self.sock.accept()[0])
                self.accepted_at.append(time.time())
            except OSError:
                pass

    def close(self):
        self.stopped = True
        for c in self.conns:
            c.close()
        self.sock.close()


def ready_message(ns, mod):
    return condition(ns, mod, "Ready").get("message", "")


def module_for(ns, name, img):
    return module_obj(ns, name, {LABEL: "yes"},
                      [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}])


@case
def silent_registry_stalls_nobody():
    ns = new_ns(f"op-rc-stall-{RUN}")
    silent = SilentRegistry()
    try:
        for i in range(SILENT_MODULES):
            apply(module_for(ns, f"silent-{i}", f"127.0.0.1:{silent.port}/op-rc/silent-{i}:{K1}"))
        # Their MICs reach the operator first and hold whatever checks them.
        t.ok(wait(lambda: len(silent.conns) >= 2, 30),
             "silent registry: the operator connected to it", f"{len(silent.conns)} connections")
        good = push_image(f"op-rc/good-{RUN}:{K1}", [K1])
        start = time.time()
        apply(module_for(ns, "good", good))
        ok = wait(lambda: mic_state(ns, "good", good) == "Exists", NORMAL_S)
        took = time.time() - start
        t.ok(ok, f"a Module on the healthy registry converges within {NORMAL_S} s while "
             f"{SILENT_MODULES} Modules wait on a silent one (took {took:.1f} s)",
             kmm_get("moduleimagesconfigs", ns, "good"))
        t.diag(f"healthy image Exists after {took:.1f} s")
        # At most 2 checks per registry host: until the first ones' deadline (30 s)
        # nothing else connects to the silent registry.
        first = silent.accepted_at[0]
        early = [a for a in silent.accepted_at if a - first < 28]
        t.ok(len(early) <= 2, "silent registry: at most 2 checks at once for one host",
             f"{len(early)} connections within 28 s of the first")
        silent_img = f"127.0.0.1:{silent.port}/op-rc/silent-0:{K1}"
        t.ok(mic_state(ns, "silent-0", silent_img) is None,
             "silent registry: the image's state stays unset while its check runs",
             kmm_get("moduleimagesconfigs", ns, "silent-0"))
        # The check's deadline (30 s) ends it; the Module says so, in our words.
        msg = wait(lambda: "no answer in time" in ready_message(ns, "silent-0")
                   and ready_message(ns, "silent-0"), 60)
        t.ok(msg == f"image {silent_img}: no answer in time",
             "silent registry: the Module's Ready message says there was no answer in time",
             ready_message(ns, "silent-0"))
    finally:
        silent.close()


@case
def metadata_address_refused():
    ns = new_ns(f"op-rc-meta-{RUN}")
    img = f"169.254.169.254:80/latest/meta-data:{K1}"
    apply(module_for(ns, "meta", img))
    want = ("refused by the operator's destination policy: 169.254.169.254 is a cloud metadata "
            "address")
    msg = wait(lambda: want in ready_message(ns, "meta") and ready_message(ns, "meta"), 30)
    t.ok(msg, "metadata address: the Module's status says refused by policy (no connection made)",
         ready_message(ns, "meta"))
    t.ok(mic_state(ns, "meta", img) is None, "metadata address: the image's state stays unset",
         kmm_get("moduleimagesconfigs", ns, "meta"))
    t.ok(msg and all(0x20 <= ord(ch) < 0x7f for ch in msg) and len(msg) < 400,
         "metadata address: the message is short printable ASCII", repr(msg))


@case
def configured_denied_network():
    ns = new_ns(f"op-rc-deny-{RUN}")
    # registryDeniedNetworks holds 127.0.0.2/32 (below): refused before any connection.
    img = f"127.0.0.2:5000/op-rc/denied:{K1}"
    apply(module_for(ns, "denied", img))
    want = "127.0.0.2 is in the operator's denied networks"
    msg = wait(lambda: want in ready_message(ns, "denied") and ready_message(ns, "denied"), 30)
    t.ok(msg, "registryDeniedNetworks: the Module's status says refused by policy",
         ready_message(ns, "denied"))


def main():
    preflight()
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/moduleimagesconfigs.kmm.sigs.x-k8s.io", "crd/modulebuildsignconfigs.kmm.sigs.x-k8s.io",
            check=False)
    system = f"op-rc-system-{RUN}"
    kubectl("create", "namespace", system, check=False)
    NAMESPACES.append(system)
    add_nodes(f"op-rc-{RUN}-n", 1, labels=[f"{LABEL}=yes"])
    op = Operator("registry-checks", system,
                  extra_config=["registryDeniedNetworks: [127.0.0.2/32]"]).start()
    OPS.append(op)
    try:
        t.ok(op.ports() is not None, "operator: started with registryDeniedNetworks",
             op.logtext()[-2000:])
        for fn in CASES:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
    finally:
        start = time.time()
        rcs = [o.stop() for o in OPS]
        t.ok(all(rc == 0 for rc in rcs), f"operator: SIGTERM exits 0 (in {time.time() - start:.1f} s)",
             OPS[-1].logtext()[-3000:])
        san = [ln for o in OPS for ln in o.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup(f"op-rc-{RUN}-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
