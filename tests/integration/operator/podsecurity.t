#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Every pod kmm creates against the kube-apiserver's PodSecurity admission
(enabled by default; namespaces labelled pod-security.kubernetes.io/enforce).

Each kind is admitted at the strictest Pod Security Standards level that can
hold it, and rejected at the next stricter level for its documented reasons
only, compared as the exact set of failed checks:
  worker (load, load with firmware, unload): privileged level. Baseline
    refuses exactly hostPath volumes (the host's /lib/modules, the firmware
    dir and firmware_class parameters), the SYS_MODULE capability, and the
    spc_t SELinux type (worker.seLinuxType, what may load modules under
    SELinux); nothing avoidable (privileged, seccomp, host namespaces...).
  pull pod: restricted, the strictest there is.
  kaniko sign: baseline. Restricted refuses exactly root (runAsUser=0,
    runAsNonRoot) and the builder capabilities: a Dockerfile's RUN steps
    install packages as root.
  kaniko build: privileged, for one reason only: upstream's read-only
    hostPath of the node's /lib/modules at /host/lib/modules.
  buildah build/sign: privileged. Baseline refuses exactly SYS_ADMIN and the
    Unconfined AppArmor profile (chroot isolation's mount namespace), and the
    build's /lib/modules hostPath.
  kmm-operator's own Deployment (deploy/manager): restricted.

Two ways in: the pods rendered by the operator's own functions
(tests/unit/operator/pod-render) submitted with --dry-run=server to a
namespace at each level; and kmm-operator itself creating worker, sign, build
and pull pods in labelled namespaces (admitted ones appear; a worker or build
pod in a baseline namespace is refused, and the operator says why)."""

import base64

import json
import os
import re
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (BUILD, SRC, Operator, PodWatch, Suite, Tap, apply, force_cleanup, kubectl,  # noqa: E402
                   mic_state, module_obj, preflight, push_image, ready_on, wait)

K1 = "6.1.0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
RUN = f"r{os.getpid()}"
RENDER = os.path.join(BUILD, "tests", "unit", "operator", "pod-render")
LEVELS = ["privileged", "baseline", "restricted"]
RT = "kmm.node.kubernetes.io/resource-type"
PPT = "kmm.node.kubernetes.io/pull-pod-type"
t = Tap()
S = Suite(K1)
NODES, NAMESPACES = S.nodes, S.namespaces
OPS = []

WORKER_BASELINE = {"hostPath volumes", "non-default capabilities", "seLinuxOptions"}
# kind: (level it is admitted at, failed checks one level stricter, words those must name)
KINDS = {
    "worker-load": ("privileged", WORKER_BASELINE, ['"lib-modules"', '"SYS_MODULE"', '"spc_t"']),
    "worker-load-firmware": ("privileged", WORKER_BASELINE,
                             ['"lib-modules"', '"lib-firmware"', '"firmware-class"', '"SYS_MODULE"']),
    "worker-unload": ("privileged", WORKER_BASELINE, ['"lib-modules"', '"SYS_MODULE"']),
    "pull": ("restricted", None, []),
    "kaniko-build": ("privileged", {"hostPath volumes"}, ['"lib-modules"']),
    "kaniko-sign": ("baseline", {"runAsNonRoot != true", "runAsUser=0", "unrestricted capabilities"},
                    ['"SETUID"']),
    "buildah-build": ("privileged", {"non-default capabilities", "forbidden AppArmor profile",
                                     "hostPath volumes"}, ['"SYS_ADMIN"', '"Unconfined"', '"lib-modules"']),
    "buildah-sign": ("privileged", {"non-default capabilities", "forbidden AppArmor profile"},
                     ['"SYS_ADMIN"', '"Unconfined"']),
}


def level_ns(level):
    ns = f"op-ps-{level}"
    kubectl("create", "namespace", ns, check=False)
    kubectl("label", "--overwrite", "namespace", ns, f"pod-security.kubernetes.io/enforce={level}",
            "pod-security.kubernetes.io/enforce-version=latest")
    if ns not in NAMESPACES:
        NAMESPACES.append(ns)
    return ns


def violations(message):
    """{check: detail} from 'violates PodSecurity "L:latest": a (x), b (y)'."""
    m = re.search(r'violates PodSecurity "[a-z]+:[^"]*": (.*)', message, re.S)
    if not m:
        return None
    out, depth, cur = {}, 0, ""
    for ch in m.group(1).strip() + ", ":
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            name, _, detail = cur.strip().partition(" (")
            if name:
                out[name] = detail.rstrip(")")
            cur = ""
        else:
            cur += ch
    return out


def submit(pod, ns):
    """--dry-run=server: admission runs in full, nothing is stored. (ok, stderr)."""
    p = json.loads(json.dumps(pod))
    md = p["metadata"]
    md["namespace"] = ns
    for k in ("ownerReferences", "finalizers", "uid", "resourceVersion", "creationTimestamp",
              "managedFields"):
        md.pop(k, None)
    if "generateName" in md and "name" not in md:
        md["name"] = md.pop("generateName") + "x"
    p.pop("status", None)
    r = subprocess.run(["kubectl", "create", "--dry-run=server", "-o", "name", "-f", "-"],
                       input=json.dumps(p), capture_output=True, text=True, timeout=60)
    return r.returncode == 0, r.stderr


def rendered_cases():
    nss = {lv: level_ns(lv) for lv in LEVELS}
    for kind, (level, stricter_fails, words) in KINDS.items():
        r = subprocess.run([RENDER, kind], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            t.ok(False, f"{kind}: rendered", r.stderr)
            continue
        pod = json.loads(r.stdout)
        ok, err = submit(pod, nss[level])
        t.ok(ok, f"{kind}: admitted at {level}", err)
        i = LEVELS.index(level)
        if i + 1 == len(LEVELS):
            continue
        stricter = LEVELS[i + 1]
        ok, err = submit(pod, nss[stricter])
        v = violations(err) or {}
        text = " ".join(v.values())
        missing = [w for w in words if w not in text]
        t.ok(not ok and set(v) == stricter_fails and not missing,
             f"{kind}: refused at {stricter} for exactly {sorted(stricter_fails)}",
             f"admitted={ok} checks={sorted(v)} missing words={missing}\n{err}")
        if kind.startswith("worker") and v:
            caps = re.findall(r'"([A-Z_]+)"', v.get("non-default capabilities", ""))
            t.ok(caps == ["SYS_MODULE"], f"{kind}: the only capability baseline refuses is SYS_MODULE",
                 v.get("non-default capabilities"))


def own_deployment():
    """kmm-operator's own Deployment (deploy/manager): its pod holds restricted."""
    out = subprocess.run(["kubectl", "create", "--dry-run=client", "-o", "json", "-f",
                          os.path.join(SRC, "deploy", "manager", "manager.yaml")],
                         capture_output=True, text=True, timeout=60)
    docs, text, dec = [], out.stdout.strip(), json.JSONDecoder()
    while text:
        obj, end = dec.raw_decode(text)
        docs.append(obj)
        text = text[end:].strip()
    dep = [d for d in docs if d.get("kind") == "Deployment"]
    if out.returncode != 0 or len(dep) != 1:
        t.ok(False, "deploy/manager: one Deployment", out.stderr)
        return
    tmpl = dep[0]["spec"]["template"]
    # Its ServiceAccount does not exist in the test namespace; the rest is as shipped.
    spec = dict(tmpl["spec"], serviceAccountName="default")
    ok, err = submit({"apiVersion": "v1", "kind": "Pod",
                      "metadata": dict(tmpl.get("metadata", {}), name="kmm-operator-controller"),
                      "spec": spec}, level_ns("restricted"))
    t.ok(ok, "deploy/manager: kmm-operator's pod admitted at restricted", err)


def operator_cases():
    """kmm-operator creates the pods in labelled namespaces."""
    priv = level_ns("privileged")
    base = S.new_ns(f"op-ps-wb-{RUN}")
    kubectl("label", "namespace", base, "pod-security.kubernetes.io/enforce=baseline")
    build_ns = S.new_ns(f"op-ps-bd-{RUN}")
    kubectl("label", "namespace", build_ns, "pod-security.kubernetes.io/enforce=baseline")
    nodes = S.add_nodes("op-ps-n", 1, K1, ["op-ps/w=yes"])
    img = push_image(f"op-ps/fw-{RUN}:{K1}", [K1], files=("kmm_ps.ko",), firmware="/firmware")
    op = Operator("podsecurity", "op-ps-system",
                  extra_env={"RELATED_IMAGE_BUILD": "registry.example/kaniko:1",
                             "RELATED_IMAGE_SIGN": "registry.example/kmm-sign:1"})
    kubectl("create", "namespace", "op-ps-system", check=False)
    NAMESPACES.append("op-ps-system")
    OPS.append(op.start())
    t.ok(op.ports() is not None, "operator: started", op.logtext()[-2000:])
    mapping = [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}]

    # worker with firmware, privileged namespace: created (admitted) and loads
    w = PodWatch(priv)
    apply(module_obj(priv, "fw", {"op-ps/w": "yes"}, mapping,
                     modprobe={"moduleName": "kmm_ps", "firmwarePath": "/firmware"}))
    p = wait(lambda: (w.created("Load", nodes[0]) or [None])[0], 60)
    sc = (p or {}).get("spec", {}).get("containers", [{}])[0].get("securityContext", {})
    t.ok(p is not None and "privileged" not in sc and sc.get("capabilities", {}).get("add") == ["SYS_MODULE"]
         and p["spec"].get("automountServiceAccountToken") is False,
         "operator: firmware loader admitted at privileged, not privileged, SYS_MODULE only, no token", sc)
    t.ok(wait(lambda: ready_on(priv, "fw", nodes), 60), "operator: firmware module loaded (kwok)")
    w.close()

    # worker and kaniko build, baseline namespace: refused, and the operator says why
    apply(module_obj(base, "wb", {"op-ps/w": "yes"}, mapping, modprobe={"moduleName": "kmm_ps"}))
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "df", "namespace": base},
           "data": {"dockerfile": "FROM scratch\n"}})
    apply(module_obj(base, "bd", {"op-ps/w": "yes"},
                     [{"regexp": "^.+$", "containerImage": f"{REG}/op-ps/never-{RUN}:{K1}",
                       "registryTLS": {"insecure": True}}],
                     modprobe={"moduleName": "kmm_ps"}, build={"dockerfileConfigMap": {"name": "df"}}))

    def refusal(controller):
        for line in op.logtext().splitlines():
            if f"controller={controller}" in line and base in line and "violates PodSecurity" in line:
                return line
        return None
    line = wait(lambda: refusal("nmc"), 60) or ""
    v = violations(line.replace('\\"', '"')) or {}
    t.ok(set(v) == WORKER_BASELINE, "operator: worker pod refused at baseline for exactly "
         "hostPath, SYS_MODULE, seLinuxOptions", line[-1500:] or op.logtext()[-2000:])
    line = wait(lambda: refusal("mbsc"), 60) or ""
    v = violations(line.replace('\\"', '"')) or {}
    t.ok(set(v) == {"hostPath volumes"} and '"lib-modules"' in v.get("hostPath volumes", ""),
         "operator: kaniko build pod refused at baseline for the /lib/modules hostPath only",
         line[-1500:] or op.logtext()[-2000:])
    pods = json.loads(kubectl("get", "pods", "-n", base, "-o", "json"))["items"]
    t.ok(not [x for x in pods if "kmm.node.kubernetes.io/worker-action" in x["metadata"].get("labels", {})
              or RT in x["metadata"].get("labels", {})],
         "operator: no worker or build pod exists in the baseline namespace")

    # kaniko sign pod, baseline namespace: admitted
    for name, key in (("key", "key"), ("cert", "cert")):
        apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": build_ns},
               "data": {key: base64.b64encode(f"{key.upper()}-1".encode()).decode()}})
    unsigned = push_image(f"op-ps/unsigned-{RUN}:{K1}", [K1], files=("kmm_ps.ko",))
    bw = PodWatch(build_ns, selector=RT)
    apply(module_obj(build_ns, "sg", {"op-ps/w": "yes"},
                     [{"regexp": "^.+$", "containerImage": f"{REG}/op-ps/signed-{RUN}:{K1}",
                       "registryTLS": {"insecure": True},
                       "sign": {"unsignedImage": unsigned, "unsignedImageRegistryTLS": {"insecure": True},
                                "keySecret": {"name": "key"}, "certSecret": {"name": "cert"},
                                "filesToSign": [f"/opt/lib/modules/{K1}/kmm_ps.ko"]}}],
                     modprobe={"moduleName": "kmm_ps"}))
    bp = wait(lambda: [o for typ, o in list(bw.events) if typ == "ADDED"], 60)
    bsc = bp[0]["spec"]["containers"][0].get("securityContext", {}) if bp else {}
    t.ok(bool(bp) and bp[0]["metadata"]["labels"].get(RT) == "SignImage" and bsc.get("runAsUser") == 0
         and bsc.get("capabilities", {}).get("drop") == ["ALL"],
         "operator: kaniko sign pod admitted at baseline", bsc or "no sign pod")
    bw.close()
    rc = op.stop()
    t.ok(rc == 0, "operator: SIGTERM exits 0", op.logtext()[-3000:])

    # pull pod (imageCheck: pullPod), restricted namespace: admitted, image Exists
    rns = S.new_ns(f"op-ps-pull-{RUN}")
    kubectl("label", "namespace", rns, "pod-security.kubernetes.io/enforce=restricted")
    pop = Operator("podsecurity-pull", "op-ps-system", extra_config=["imageCheck: pullPod"])
    OPS.append(pop.start())
    pw = PodWatch(rns, selector=PPT)
    pimg = f"{REG}/op-ps/pulled-{RUN}:{K1}"
    apply(module_obj(rns, "pl", {"op-ps/w": "yes"},
                     [{"regexp": "^.+$", "containerImage": pimg, "registryTLS": {"insecure": True}}],
                     modprobe={"moduleName": "kmm_ps"}))
    pp = wait(lambda: [o for typ, o in list(pw.events) if typ == "ADDED"], 60)
    t.ok(bool(pp) and pp[0]["spec"]["containers"][0].get("securityContext", {}).get("runAsNonRoot") is True,
         "operator: pull pod admitted at restricted", pp[0]["spec"] if pp else "no pull pod")
    t.ok(wait(lambda: mic_state(rns, "pl", pimg) == "Exists", 60),
         "operator: the restricted pull pod Succeeded -> image Exists")
    pw.close()


def main():
    preflight()
    if not os.access(RENDER, os.X_OK):
        t.ok(False, f"{RENDER} built (ninja -C {BUILD} tests/unit/operator/pod-render)")
        return t.finish()
    try:
        for fn in (rendered_cases, own_deployment, operator_cases):
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken part must not hide the other
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
    finally:
        rcs = [o.stop() for o in OPS]
        t.ok(all(rc == 0 for rc in rcs), "operators: SIGTERM exits 0",
             OPS[-1].logtext()[-3000:] if OPS else "")
        san = [ln for o in OPS for ln in o.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operators: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup("op-ps-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
