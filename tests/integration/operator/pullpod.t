#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator with `imageCheck: pullPod`: image existence read from pull pods
(the nodes' runtime pulls the kmod image) instead of the registry API, and the
buildah builder's build pod. One namespace and node prefix (op-pp-*) per case.

Pods complete the testenv way (tests/env/kwok/stages.yaml): a pull pod bound
to a simulated node Succeeds at once; annotated kmm.testenv/outcome=pending it
stays Pending with ImagePullBackOff (=fail: Failed). The annotation must be
there before kwok binds the pod: a MutatingAdmissionPolicy adds it at creation
to the pull pods of one namespace. (Cordoning the nodes would not do: a Module
does not target unschedulable nodes, so its MIC lists no image.) The images of the "exists" case are never pushed:
only a pull pod can have said they exist (the registry would say they do not)."""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, PodWatch, Suite, Tap, apply, condition, events,  # noqa: E402
                   force_cleanup, kj, kmm_get, kubectl, mic_state, module, module_obj, nmc_entry,
                   preflight, push_image, testenv, wait)

K1 = "6.1.0-18-amd64"
K1_DNS = "6-1-0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
BUILD_IMAGE = "quay.io/buildah/stable:v1"
WORKER_IMAGE = "registry.example/kmm-worker:test"  # oplib's RELATED_IMAGE_WORKER
RUN = f"r{os.getpid()}"
OWNER = "kmm.node.kubernetes.io/image-owner"
PPT = "kmm.node.kubernetes.io/pull-pod-type"
RT = "kmm.node.kubernetes.io/resource-type"
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns
cond, get = condition, kmm_get
OPS = []
POLICIES = []


def pull_pods(ns):
    return kj("get", "pods", "-n", ns, "-l", PPT)["items"]


def added(w):
    return [o for typ, o in list(w.events) if typ == "ADDED"]


def outcome_policy(ns, annotations):
    """A MutatingAdmissionPolicy giving this namespace's pull pods testenv annotations."""
    name = f"{ns}-outcome"
    ann = ", ".join(f'"{k}": "{v}"' for k, v in annotations.items())
    apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
           "metadata": {"name": name},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                            "operations": ["CREATE"], "resources": ["pods"]}],
                                         "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                         "objectSelector": {"matchExpressions": [{"key": PPT, "operator": "Exists"}]}},
                    "failurePolicy": "Fail", "reinvocationPolicy": "Never",
                    "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                        "expression": f"Object{{metadata: Object.metadata{{annotations: {{{ann}}}}}}}"}}]}})
    apply({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
           "metadata": {"name": name}, "spec": {"policyName": name}})
    POLICIES.append(name)

    def active():
        p = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "op-pp-probe", "namespace": ns, "labels": {PPT: "probe"}},
             "spec": {"containers": [{"name": "c", "image": "x"}]}}
        out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(p), check=False)
        try:
            return "kmm.testenv/outcome" in json.loads(out)["metadata"].get("annotations", {})
        except ValueError:
            return False
    return wait(active, 30)


def drop_policy(ns):
    name = f"{ns}-outcome"
    kubectl("delete", "mutatingadmissionpolicybinding", name, "--ignore-not-found", check=False)
    kubectl("delete", "mutatingadmissionpolicy", name, "--ignore-not-found", check=False)


PENDING = {"kmm.testenv/outcome": "pending", "kmm.testenv/waiting-reason": "ImagePullBackOff"}


# ---------------------------------------------------------------------------

def check_pull_pod(p, ns, mod, img, ptype):
    bad = []

    def want(c, what):
        if not c:
            bad.append(what)
    md, spec = p["metadata"], p["spec"]
    want(md.get("generateName") == f"{mod}-pull-pod-" and md["name"].startswith(f"{mod}-pull-pod-"),
         f"generateName {md.get('generateName')}")
    want(md.get("labels") == {OWNER: mod, PPT: ptype}, f"labels {md.get('labels')}")
    own = md.get("ownerReferences") or [{}]
    want(len(own) == 1 and own[0].get("kind") == "ModuleImagesConfig" and own[0].get("name") == mod
         and own[0].get("controller") is True, f"owner {own}")
    want(spec.get("restartPolicy") == "Never", "restartPolicy Never")
    want(not spec.get("nodeSelector"), f"nodeSelector {spec.get('nodeSelector')}")
    cs = spec.get("containers") or []
    c = cs[0] if cs else {}
    want(len(cs) == 1 and c.get("name") == "puller" and c.get("image") == img,
         f"container {c.get('name')} {c.get('image')}")
    want(c.get("command") == ["/run/kmm/bin/kmm-worker-copy", "--version"] and not c.get("args")
         and c.get("volumeMounts") == [{"name": "copier", "mountPath": "/run/kmm/bin", "readOnly": True}],
         f"command {c.get('command')} args {c.get('args')} mounts {c.get('volumeMounts')}")
    ics = spec.get("initContainers") or []
    ic = ics[0] if ics else {}
    want(len(ics) == 1 and ic.get("name") == "install-copier" and ic.get("image") == WORKER_IMAGE
         and spec.get("volumes") == [{"name": "copier", "emptyDir": {}}],
         f"init containers {ics} volumes {spec.get('volumes')}")
    want(c.get("imagePullPolicy") == "Always", f"imagePullPolicy {c.get('imagePullPolicy')}")
    want(spec.get("imagePullSecrets") == [{"name": "op-pp-pull"}],
         f"imagePullSecrets {spec.get('imagePullSecrets')}")
    tol = [x for x in spec.get("tolerations") or [] if x.get("key") == "op-pp/taint"]
    want(tol == [{"key": "op-pp/taint", "operator": "Exists", "effect": "NoSchedule"}],
         f"tolerations {spec.get('tolerations')}")
    return bad


@case
def exists_via_pull_pod():
    ns = new_ns("op-pp-exists")
    nodes = add_nodes("op-pp-ex-n", 1, labels=["op-pp/ex=yes"])
    img = f"{REG}/op-pp/never-pushed-{RUN}:{K1}"
    kubectl("create", "secret", "docker-registry", "op-pp-pull", "-n", ns,
            "--docker-server=registry.example", "--docker-username=u", "--docker-password=p")
    w = PodWatch(ns, selector=PPT)
    ww = PodWatch(ns)
    m = module_obj(ns, "ex", {"op-pp/ex": "yes"},
                   [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}],
                   imagePullPolicy="Always")
    m["spec"]["imageRepoSecret"] = {"name": "op-pp-pull"}
    m["spec"]["tolerations"] = [{"key": "op-pp/taint", "operator": "Exists", "effect": "NoSchedule"}]
    apply(m)
    t.ok(wait(lambda: mic_state(ns, "ex", img) == "Exists", 60),
         "pull pod Succeeded -> MIC Exists (image never pushed: the registry was not asked)",
         get("moduleimagesconfigs", ns, "ex"))
    pods = added(w)
    t.ok(len(pods) == 1 and not check_pull_pod(pods[0], ns, "ex", img, "until-success"),
         "pull pod shape: generateName, labels, owner, install-copier from the worker image, "
         "puller kmm-worker-copy --version (no shell needed), Never, "
         "pull policy, secret, tolerations",
         (check_pull_pod(pods[0], ns, "ex", img, "until-success")
          + [f"pull pods seen: {[o['metadata']['name'] for o in pods]}"]) if pods else "no pull pod seen")
    t.ok(wait(lambda: not pull_pods(ns), 30), "pull pod deleted once read",
         [p["metadata"]["name"] for p in pull_pods(ns)])
    e = wait(lambda: nmc_entry(nodes[0], "spec", ns, "ex"), 30) or {}
    t.ok((e.get("config") or {}).get("containerImage") == img, "Exists -> NMC entry with the image", e)
    t.ok(wait(lambda: [o for o in added(ww) if o["spec"].get("nodeName") == nodes[0]], 30),
         "Exists -> worker pod on the node")
    w.close()
    ww.close()


def check_buildah_pod(p, mod, img):
    bad = []
    md, spec = p["metadata"], p["spec"]
    if md["name"] != f"{mod}-build-{K1_DNS}" or md.get("labels", {}).get(RT) != "BuildImage":
        bad.append(f"name {md['name']} labels {md.get('labels')}")
    c = spec["containers"][0]
    if c.get("name") != "buildah" or c.get("image") != BUILD_IMAGE:
        bad.append(f"container {c.get('name')} {c.get('image')}")
    if c.get("command") != ["/bin/sh", "-c"] or len(c.get("args") or []) != 1:
        bad.append(f"command {c.get('command')} args {c.get('args')}")
        return bad
    sc = c.get("securityContext") or {}
    if (sc.get("privileged") or sc.get("runAsUser") != 0
            or "SYS_ADMIN" not in sc.get("capabilities", {}).get("add", [])):
        bad.append(f"securityContext {sc}")
    script = c["args"][0]
    want = ["set -e\n",
            "buildah --storage-driver vfs bud --isolation chroot --tls-verify=false",
            f"--build-arg 'KERNEL_VERSION={K1}'", f"--build-arg 'MOD_NAME={mod}'",
            f" -f /workspace/Dockerfile -t '{img}' /workspace\n",
            "buildah --storage-driver vfs push --tls-verify=false",
            f"'{img}' 'docker://{img}'\n"]
    bad += [f"script lacks {x!r}: {script!r}" for x in want if x not in script]
    return bad


@case
def pull_failure_with_build():
    """one-time-pull: the pull fails -> NeedsBuilding -> a buildah build pod."""
    ns = new_ns("op-pp-build")
    add_nodes("op-pp-bd-n", 1, labels=["op-pp/bd=yes"])
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "op-pp-df", "namespace": ns},
           "data": {"dockerfile": "FROM scratch\n"}})
    img = f"{REG}/op-pp/build-{RUN}:{K1}"
    w = PodWatch(ns, selector=PPT)
    bw = PodWatch(ns, selector=RT)
    pol = outcome_policy(ns, PENDING)
    apply(module_obj(ns, "bd", {"op-pp/bd": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}],
                     build={"dockerfileConfigMap": {"name": "op-pp-df"},
                            "baseImageRegistryTLS": {"insecure": True}}))
    p = wait(lambda: (added(w) or [None])[0], 30)
    t.ok(pol, "testenv: admission policy makes pull pods pend with ImagePullBackOff")
    t.ok(p and p["metadata"]["labels"].get(PPT) == "one-time-pull",
         "build section -> one-time-pull pull pod", p and p["metadata"].get("labels"))
    t.ok(wait(lambda: mic_state(ns, "bd", img) in ("NeedsBuilding", "Exists"), 60)
         and (get("modulebuildsignconfigs", ns, "bd") or {}).get("spec", {}).get("images", [{}])[0]
         .get("action") == "BuildImage",
         "ImagePullBackOff on a one-time-pull pod -> NeedsBuilding -> MBSC BuildImage",
         get("moduleimagesconfigs", ns, "bd"))
    bp = wait(lambda: [o for o in added(bw) if o["metadata"].get("labels", {}).get(RT) == "BuildImage"], 30)
    bad = check_buildah_pod(bp[0], "bd", img) if bp else ["no build pod"]
    t.ok(not bad, "job.builder buildah: build pod's container is buildah with bud and push", bad)
    t.ok(wait(lambda: not pull_pods(ns), 30) and len(added(w)) == 1,
         "the read pull pod is deleted, no other pull pod", [o["metadata"]["name"] for o in added(w)])
    w.close()
    bw.close()


@case
def pull_failure_without_build():
    """until-success: reported DoesNotExist after the backoff, deleted, replaced later."""
    ns = new_ns("op-pp-miss")
    add_nodes("op-pp-ms-n", 1, labels=["op-pp/ms=yes"])
    img = f"{REG}/op-pp/missing-{RUN}:{K1}"
    w = PodWatch(ns, selector=PPT)
    outcome_policy(ns, PENDING)
    apply(module_obj(ns, "ms", {"op-pp/ms": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}]))
    p = wait(lambda: (added(w) or [None])[0], 30)
    t.ok(p and p["metadata"]["labels"].get(PPT) == "until-success",
         "no build or sign -> until-success pull pod", p and p["metadata"].get("labels"))
    t.ok(wait(lambda: mic_state(ns, "ms", img) == "DoesNotExist", 60),
         "ImagePullBackOff on an until-success pod -> DoesNotExist after the backoff",
         get("moduleimagesconfigs", ns, "ms"))
    ev = wait(lambda: events(ns, "ms", "ImageDoesNotExist"), 20) or [{}]
    t.ok(ev[0].get("type") == "Warning" and img in ev[0].get("message", ""),
         "missing image: Warning event on the Module", ev[0])
    c = wait(lambda: "ImagePullBackOff" in cond(ns, "ms", "Ready").get("message", "")
             and cond(ns, "ms", "Ready"), 30)
    t.ok(c, "missing image: Ready condition gives the pull error", cond(ns, "ms", "Ready"))
    first = p["metadata"]["name"] if p else ""
    t.ok(wait(lambda: first not in [x["metadata"]["name"] for x in pull_pods(ns)], 30),
         "the read pull pod is deleted")
    # Replaced after the backoff (and still failing), one pod at a time.
    nxt = wait(lambda: [x for x in added(w) if x["metadata"]["name"] != first], 60)
    most = 0
    for _ in range(10):
        most = max(most, len(pull_pods(ns)))
        time.sleep(0.5)
    t.ok(nxt and most <= 1 and mic_state(ns, "ms", img) == "DoesNotExist",
         "replacement pull pod after the backoff; never more than one; state kept",
         [o["metadata"]["name"] for o in added(w)])
    drop_policy(ns)
    t.ok(wait(lambda: mic_state(ns, "ms", img) == "Exists", 90),
         "the replacement pod can pull -> Exists", get("moduleimagesconfigs", ns, "ms"))
    w.close()


@case
def failed_pull_pod():
    """A pull pod that fails (e.g. an image for another architecture): DoesNotExist with the reason, deleted."""
    ns = new_ns("op-pp-fail")
    add_nodes("op-pp-fl-n", 1, labels=["op-pp/fl=yes"])
    img = f"{REG}/op-pp/fail-{RUN}:{K1}"
    w = PodWatch(ns, selector=PPT)
    outcome_policy(ns, {"kmm.testenv/outcome": "fail", "kmm.testenv/exit-code": "127"})
    apply(module_obj(ns, "fl", {"op-pp/fl": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}]))
    p = wait(lambda: (added(w) or [None])[0], 30)
    t.ok(p and wait(lambda: mic_state(ns, "fl", img) == "DoesNotExist", 60),
         "Failed pull pod -> DoesNotExist", get("moduleimagesconfigs", ns, "fl"))
    c = wait(lambda: "127" in cond(ns, "fl", "Ready").get("message", "") and cond(ns, "fl", "Ready"), 30)
    t.ok(c, "Failed pull pod: the Ready condition gives the exit code", cond(ns, "fl", "Ready"))
    t.ok(p and wait(lambda: p["metadata"]["name"] not in [x["metadata"]["name"] for x in pull_pods(ns)], 30),
         "Failed pull pod deleted")
    w.close()


def default_config_no_pull_pods():
    """Without the option the registry is asked: a pushed image Exists, no pull pod."""
    ns = new_ns("op-pp-default")
    add_nodes("op-pp-df-n", 1, labels=["op-pp/df=yes"])
    img = push_image(f"op-pp/pushed-{RUN}:{K1}", [K1])
    w = PodWatch(ns, selector=PPT)
    op = Operator("pullpod-default", "op-pp-system").start()
    OPS.append(op)
    apply(module_obj(ns, "df", {"op-pp/df": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}]))
    t.ok(wait(lambda: mic_state(ns, "df", img) == "Exists", 60),
         "default config: registry check -> Exists", get("moduleimagesconfigs", ns, "df"))
    t.ok(not added(w) and not pull_pods(ns), "default config: no pull pod created",
         [o["metadata"]["name"] for o in added(w)])
    w.close()


def main():
    preflight()
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/moduleimagesconfigs.kmm.sigs.x-k8s.io", "crd/modulebuildsignconfigs.kmm.sigs.x-k8s.io",
            check=False)
    kubectl("create", "namespace", "op-pp-system", check=False)
    NAMESPACES.append("op-pp-system")
    op = Operator("pullpod", "op-pp-system", extra_env={"RELATED_IMAGE_BUILD": BUILD_IMAGE},
                  extra_config=["imageCheck: pullPod", "job:", "  builder: buildah"]).start()
    OPS.append(op)
    try:
        t.ok(op.ports() is not None, "operator: started with imageCheck: pullPod", op.logtext()[-2000:])
        for fn in CASES:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
        rc = op.stop()
        t.ok(rc == 0, "operator (pullPod): SIGTERM exits 0", op.logtext()[-3000:])
        try:
            default_config_no_pull_pods()
        except Exception:  # noqa: BLE001
            t.ok(False, "default_config_no_pull_pods: raised", traceback.format_exc())
    finally:
        for name in POLICIES:
            drop_policy(name[:-len("-outcome")])
        rcs = [o.stop() for o in OPS]
        t.ok(all(rc == 0 for rc in rcs), "operators: SIGTERM exits 0", OPS[-1].logtext()[-3000:])
        san = [ln for o in OPS for ln in o.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operators: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup("op-pp-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
