#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's build and sign flow against the testenv and its registry:
Module -> ModuleImagesConfig (registry check) -> ModuleBuildSignConfig ->
build/sign pods -> image Exists -> NMC -> worker pods. One namespace and node
prefix (op-bs-*) per case, one operator for the suite.

Pods complete the testenv way (tests/env/kwok/stages.yaml): a build pod whose
build.selector matches no node stays Pending (unscheduled) while the test
looks at it and pushes the image; labelling a node then lets the scheduler
bind it and kwok completes it (or fails it, when annotated first)."""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import (Operator, PodWatch, Suite, Tap, apply, condition, events,  # noqa: E402
                   force_cleanup, kj, kmm_get, kubectl, mic_state, module, module_obj, nmc_entry,
                   node_labels, preflight, push_image, ready_label, ready_on, testenv, wait)

K1 = "6.1.0-18-amd64"
K1_DNS = "6-1-0-18-amd64"
REG = os.environ.get("KMM_TESTENV_REGISTRY", "")
BUILD_IMAGE = "registry.example/kaniko:v1.23.2"
SIGN_IMAGE = "registry.example/kmm-sign:test"
GC_DELAY_S = 15
RUN = f"r{os.getpid()}"  # image tags never pushed before, even on a reused testenv
RT = "kmm.node.kubernetes.io/resource-type"
t = Tap()
S = Suite(K1)
CASES, NODES, NAMESPACES = S.cases, S.nodes, S.namespaces
case, add_nodes, new_ns = S.case, S.add_nodes, S.new_ns
cond, get = condition, kmm_get
OPS = []  # the operators of the suite, the running one last


def new_operator():
    op = Operator(f"buildsign{len(OPS) or ''}", "op-bs-system",
                  extra_env={"RELATED_IMAGE_BUILD": BUILD_IMAGE, "RELATED_IMAGE_SIGN": SIGN_IMAGE},
                  extra_config=["job:", f"  gcDelay: {GC_DELAY_S}s"])
    OPS.append(op)
    return op.start()


def mbsc_result(ns, name, image):
    o = get("modulebuildsignconfigs", ns, name) or {}
    for s in (o.get("status") or {}).get("images") or []:
        if s.get("image") == image:
            return (s.get("action"), s.get("status"))
    return None


def pod(ns, name):
    return kj("get", "pod", "-n", ns, name, "--ignore-not-found")


def b64(s):
    import base64
    return base64.b64encode(s.encode()).decode()


def secret(ns, name, data, stype="Opaque"):
    apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
           "type": stype, "data": {k: b64(v) for k, v in data.items()}})


def dockerfile_cm(ns, name, text):
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
           "data": {"dockerfile": text}})


def fail_policy(name, ns, resource_type):
    """A MutatingAdmissionPolicy that makes this namespace's pods of one resource-type fail."""
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
              "metadata": {"name": name},
              "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                               "operations": ["CREATE"], "resources": ["pods"]}],
                                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                            "objectSelector": {"matchLabels": {RT: resource_type}}},
                       "failurePolicy": "Fail", "reinvocationPolicy": "Never",
                       "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression":
                           'Object{metadata: Object.metadata{annotations: {"kmm.testenv/outcome": "fail", "kmm.testenv/exit-code": "2"}}}'}}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
               "metadata": {"name": name}, "spec": {"policyName": name}}
    apply(policy)
    apply(binding)


def drop_policy(name):
    kubectl("delete", "mutatingadmissionpolicybinding", name, "--ignore-not-found", check=False)
    kubectl("delete", "mutatingadmissionpolicy", name, "--ignore-not-found", check=False)


def policy_active(ns, labels):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "op-bs-probe", "namespace": ns, "labels": labels},
         "spec": {"containers": [{"name": "c", "image": "x"}]}}
    out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(p), check=False)
    try:
        return "kmm.testenv/outcome" in json.loads(out)["metadata"].get("annotations", {})
    except ValueError:
        return False


def settle(w, action, seconds=8):
    """Pods of `action` created so far, after letting the operator run a while.

    Used only to show that nothing more happens (no loop): the count is compared,
    never a duration."""
    time.sleep(seconds)
    return len(w.created_by(action))


def created_by(self, action):
    return [o for typ, o in list(self.events)
            if typ == "ADDED" and o["metadata"].get("labels", {}).get(RT) == action
            and o["metadata"]["name"] not in self._before]


PodWatch.created_by = created_by


def bswatch(ns):
    w = PodWatch(ns, selector=RT)
    w._before = set()
    return w


# ---------------------------------------------------------------------------

def check_build_pod(p, ns, mod, img):
    bad = []

    def want(c, what):
        if not c:
            bad.append(what)
    md, spec = p["metadata"], p["spec"]
    want(md["name"] == f"{mod}-build-{K1_DNS}", f"name {md['name']}")
    lab = md.get("labels", {})
    want(lab.get("kmm.node.kubernetes.io/module.name") == mod and lab.get(RT) == "BuildImage"
         and lab.get("kmm.node.kubernetes.io/target-kernel") == K1_DNS, f"labels {lab}")
    want(set(md.get("finalizers", [])) == {"kmm.node.kubernetes.io/gc-delay",
                                           "kmm.node.kubernetes.io/job-event-finalizer"},
         f"finalizers {md.get('finalizers')}")
    want("kmm.node.kubernetes.io/last-hash" in md.get("annotations", {}), "last-hash annotation")
    own = (md.get("ownerReferences") or [{}])[0]
    want(own.get("kind") == "ModuleBuildSignConfig" and own.get("name") == mod and own.get("controller"),
         f"owner {own}")
    want(spec.get("restartPolicy") == "Never", "restartPolicy Never")
    want(spec.get("nodeSelector") == {"op-bs/builder": "yes"}, f"nodeSelector {spec.get('nodeSelector')}")
    c = spec["containers"][0]
    want(c["name"] == "kaniko" and c["image"] == "registry.example/kaniko:debug",
         f"container {c['name']} {c['image']} (kanikoParams.tag replaces the tag)")
    exp = ["--destination", img, "--insecure", "--insecure-pull",
           "--build-arg", "MY_ARG=hello", "--build-arg", f"KERNEL_VERSION={K1}",
           "--build-arg", f"KERNEL_FULL_VERSION={K1}", "--build-arg", f"MOD_NAME={mod}",
           "--build-arg", f"MOD_NAMESPACE={ns}"]
    want(c.get("args") == exp, f"args {c.get('args')} != {exp}")
    mounts = {(m["name"], m["mountPath"]) for m in c.get("volumeMounts", [])}
    want({("dockerfile", "/workspace"), ("lib-modules", "/host/lib/modules"),
          ("build-secret-0", "/run/secrets/op-bs-build-secret"),
          ("docker-config", "/kaniko/.docker")} <= mounts, f"mounts {sorted(mounts)}")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    want(vols.get("dockerfile", {}).get("configMap", {}).get("name") == "op-bs-dockerfile",
         "dockerfile ConfigMap volume")
    want(vols.get("build-secret-0", {}).get("secret", {}).get("secretName") == "op-bs-build-secret",
         "build secret volume")
    want(vols.get("docker-config", {}).get("secret", {}).get("secretName") == "op-bs-pull",
         "pull secret volume")
    return bad


@case
def build_flow():
    ns = new_ns("op-bs-build")
    nodes = add_nodes("op-bs-build-n", 1, K1, ["op-bs/build=yes"])
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\nARG KERNEL_FULL_VERSION\n")
    secret(ns, "op-bs-build-secret", {"token": "t0ken"})
    secret(ns, "op-bs-pull", {".dockerconfigjson": '{"auths":{}}'}, "kubernetes.io/dockerconfigjson")
    repo = f"op-bs/build-{RUN}"
    img = f"{REG}/{repo}:{K1}"
    w = bswatch(ns)
    build = {"dockerfileConfigMap": {"name": "op-bs-dockerfile"},
             "buildArgs": [{"name": "MY_ARG", "value": "hello"}],
             "secrets": [{"name": "op-bs-build-secret"}],
             "baseImageRegistryTLS": {"insecure": True},
             "kanikoParams": {"tag": "debug"},
             "selector": {"op-bs/builder": "yes"}}
    m = module_obj(ns, "bld", {"op-bs/build": "yes"},
                   [{"regexp": "^.+$", "containerImage": f"{REG}/{repo}:${{KERNEL_FULL_VERSION}}",
                     "registryTLS": {"insecure": True}}], build=build)
    m["spec"]["imageRepoSecret"] = {"name": "op-bs-pull"}
    apply(m)
    t.ok(wait(lambda: mic_state(ns, "bld", img) == "NeedsBuilding", 30),
         "build: missing image with a build section -> MIC NeedsBuilding", get("moduleimagesconfigs", ns, "bld"))
    mic = get("moduleimagesconfigs", ns, "bld") or {}
    own = (mic.get("metadata", {}).get("ownerReferences") or [{}])[0]
    t.ok(own.get("kind") == "Module" and own.get("controller") and mic["spec"].get("pushBuiltImage") is True
         and mic["spec"]["images"][0]["kernelVersion"] == K1,
         "build: MIC owned by the Module, pushBuiltImage, kernelVersion", mic.get("spec"))
    mb = wait(lambda: get("modulebuildsignconfigs", ns, "bld"), 30) or {}
    imgs = (mb.get("spec") or {}).get("images") or [{}]
    t.ok(imgs[0].get("action") == "BuildImage" and imgs[0].get("image") == img
         and mb["metadata"]["ownerReferences"][0]["kind"] == "ModuleImagesConfig",
         "build: MBSC entry BuildImage, owned by the MIC", mb.get("spec"))
    pname = f"bld-build-{K1_DNS}"
    p = wait(lambda: pod(ns, pname), 30)
    t.ok(p is not None, "build: build pod created")
    if p:
        bad = check_build_pod(p, ns, "bld", img)
        t.ok(not bad, "build: pod has the exact arguments, mounts, selector and identity", "\n".join(bad))
        t.ok(p["status"].get("phase") == "Pending", "build: pod pending while build.selector matches no node")
    t.ok(wait(lambda: events(ns, "bld", "BuildimageCreated"), 20)
         and wait(lambda: events(ns, "bld", "BuildCreated"), 20),
         "build: BuildimageCreated event on the MBSC, BuildCreated on the Module")
    t.ok(nmc_entry(nodes[0], "spec", ns, "bld") is None, "build: no NMC entry before the image exists")
    c = wait(lambda: "being built" in cond(ns, "bld", "Ready").get("message", "") and cond(ns, "bld", "Ready"), 20)
    t.ok(c, "build: Ready condition says the image is being built", cond(ns, "bld", "Ready"))
    c = wait(lambda: "Unschedulable" in cond(ns, "bld", "Ready").get("message", "") and cond(ns, "bld", "Ready"), 30)
    ev = wait(lambda: events(ns, "bld", "BuildimagePending"), 20) or [{}]
    t.ok(c and ev[0].get("type") == "Warning" and "Unschedulable" in ev[0].get("message", ""),
         "build: a pod that cannot be scheduled is reported (Ready message, Warning BuildimagePending)",
         (cond(ns, "bld", "Ready"), ev[0]))
    # The "build": push the image, then let the pod be scheduled; kwok completes it.
    push_image(f"{repo}:{K1}", [K1])
    kubectl("label", "node", nodes[0], "op-bs/builder=yes")
    t.ok(wait(lambda: mbsc_result(ns, "bld", img) == ("BuildImage", "Success"), 60),
         "build: pod succeeded -> MBSC Success", get("modulebuildsignconfigs", ns, "bld"))
    t.ok(wait(lambda: mic_state(ns, "bld", img) == "Exists", 30), "build: MIC Exists")
    t.ok(wait(lambda: ready_on(ns, "bld", nodes), 60)
         and (nmc_entry(nodes[0], "spec", ns, "bld") or {}).get("config", {}).get("containerImage") == img,
         "build: NMC entry with the built image, module loaded by the worker")
    t.ok(wait(lambda: events(ns, "bld", "BuildimageSucceeded"), 20)
         and events(ns, "bld", "BuildSucceeded"), "build: BuildimageSucceeded / BuildSucceeded events")
    ev = (events(ns, "bld", "BuildimageSucceeded") or [{}])[0]
    t.ok(ev.get("involvedObject", {}).get("kind") == "ModuleBuildSignConfig"
         and ev.get("metadata", {}).get("annotations", {}).get("pod-name") == pname,
         "build: event on the MBSC with the pod-name annotation", ev)
    # GC: the succeeded pod is deleted but held by gc-delay for job.gcDelay.
    held = wait(lambda: (pod(ns, pname) or {}).get("metadata", {}).get("deletionTimestamp") and pod(ns, pname), 30)
    t.ok(held and "kmm.node.kubernetes.io/gc-delay" in held["metadata"].get("finalizers", []),
         "gc: succeeded build pod deleted, held by the gc-delay finalizer", held and held["metadata"])
    t.ok(wait(lambda: pod(ns, pname) is None, GC_DELAY_S + 45), "gc: pod gone once job.gcDelay passed")
    t.ok(len(w.created_by("BuildImage")) == 1, "build: exactly one build pod over the whole flow",
         [o["metadata"]["name"] for o in w.created_by("BuildImage")])
    st = (module(ns, "bld") or {}).get("status", {})
    # imageRebuildTriggerGeneration: state forgotten, MBSC deleted, registry asked again.
    mb_uid = (get("modulebuildsignconfigs", ns, "bld") or {}).get("metadata", {}).get("uid")
    kubectl("patch", "modules.kmm.sigs.x-k8s.io", "-n", ns, "bld", "--type=merge", "-p",
            '{"spec":{"imageRebuildTriggerGeneration":1}}')
    t.ok(wait(lambda: (module(ns, "bld") or {}).get("status", {}).get("imageRebuildTriggerGeneration") == 1, 30),
         "rebuild trigger: Module status.imageRebuildTriggerGeneration follows the MIC", st)
    mic = get("moduleimagesconfigs", ns, "bld") or {}
    mb2 = get("modulebuildsignconfigs", ns, "bld")
    t.ok(mic.get("status", {}).get("imageRebuildTriggerGeneration") == 1
         and (mb2 is None or mb2["metadata"]["uid"] != mb_uid),
         "rebuild trigger: MIC generation recorded, old MBSC deleted", (mic.get("status"), mb2 and mb2["metadata"]))
    t.ok(wait(lambda: mic_state(ns, "bld", img) == "Exists", 30) and ready_on(ns, "bld", nodes),
         "rebuild trigger: image still in the registry -> Exists again, no rebuild, still loaded")
    w.close()


@case
def build_failure():
    ns = new_ns("op-bs-fail")
    nodes = add_nodes("op-bs-fail-n", 1, K1, ["op-bs/fail=yes"])
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\n")
    repo = f"op-bs/fail-{RUN}"
    img = f"{REG}/{repo}:{K1}"
    w = bswatch(ns)
    build = {"dockerfileConfigMap": {"name": "op-bs-dockerfile"}, "selector": {"op-bs/fail-builder": "yes"}}
    apply(module_obj(ns, "bf", {"op-bs/fail": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}], build=build))
    pname = f"bf-build-{K1_DNS}"
    p = wait(lambda: pod(ns, pname), 30)
    t.ok(p is not None, "build failure: build pod created")
    kubectl("annotate", "pod", "-n", ns, pname, "kmm.testenv/outcome=fail", "kmm.testenv/exit-code=3")
    kubectl("label", "node", nodes[0], "op-bs/fail-builder=yes")
    t.ok(wait(lambda: mbsc_result(ns, "bf", img) == ("BuildImage", "Failure"), 60),
         "build failure: MBSC Failure", get("modulebuildsignconfigs", ns, "bf"))
    t.ok(wait(lambda: mic_state(ns, "bf", img) == "DoesNotExist", 30), "build failure: MIC DoesNotExist")
    c = wait(lambda: "build failed" in cond(ns, "bf", "Ready").get("message", "") and cond(ns, "bf", "Ready"), 30)
    t.ok(c and c.get("status") == "False", "build failure: Ready False says the build failed", cond(ns, "bf", "Ready"))
    ev = wait(lambda: events(ns, "bf", "BuildimageFailed"), 20) or [{}]
    t.ok(ev[0].get("type") == "Warning" and "exit code 3" in ev[0].get("message", "")
         and events(ns, "bf", "BuildFailed"),
         "build failure: Warning BuildimageFailed (with the exit code) and BuildFailed events", ev[0])
    n = settle(w, "BuildImage")
    p = pod(ns, pname) or {}
    t.ok(n == 1 and p.get("status", {}).get("phase") == "Failed" and not p["metadata"].get("deletionTimestamp"),
         "build failure: failed pod kept, not retried (one pod, no loop)", n)
    t.ok(len(events(ns, "bf", "BuildimageFailed")) == 1 and events(ns, "bf", "BuildimageFailed")[0].get("count", 1) == 1,
         "build failure: one failure event")
    t.ok(nmc_entry(nodes[0], "spec", ns, "bf") is None, "build failure: no NMC entry")
    # A fixed Dockerfile (the ConfigMap is watched) replaces the failed pod; this time it succeeds.
    push_image(f"{repo}:{K1}", [K1])
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\n# fixed\n")
    t.ok(wait(lambda: mbsc_result(ns, "bf", img) == ("BuildImage", "Success"), 60),
         "build failure: edited Dockerfile -> new pod -> Success", get("modulebuildsignconfigs", ns, "bf"))
    t.ok(wait(lambda: ready_on(ns, "bf", nodes), 60), "build failure: loaded after the fixed build")
    t.ok(len(w.created_by("BuildImage")) == 2, "build failure: exactly two build pods in all",
         [o["metadata"]["name"] for o in w.created_by("BuildImage")])
    w.close()


def sign_module(ns, name, img, unsigned, sel):
    sign = {"unsignedImage": unsigned, "unsignedImageRegistryTLS": {"insecure": True},
            "keySecret": {"name": "op-bs-key"}, "certSecret": {"name": "op-bs-cert"},
            "filesToSign": [f"/opt/lib/modules/{K1}/*.ko"]}
    return module_obj(ns, name, sel, [{"regexp": "^.+$", "containerImage": img,
                                       "registryTLS": {"insecure": True}, "sign": sign}])


@case
def sign_flow_and_key_rotation():
    ns = new_ns("op-bs-sign")
    nodes = add_nodes("op-bs-sign-n", 1, K1, ["op-bs/sign=yes"])
    secret(ns, "op-bs-key", {"key": "KEY-1"})
    secret(ns, "op-bs-cert", {"cert": "CERT-1"})
    unsigned = push_image(f"op-bs/unsigned-{RUN}:{K1}", [K1])
    img = f"{REG}/op-bs/signed-{RUN}:{K1}"
    w = bswatch(ns)
    apply(sign_module(ns, "sg", img, unsigned, {"op-bs/sign": "yes"}))
    pname = f"sg-sign-{K1_DNS}"
    t.ok(wait(lambda: w.created_by("SignImage"), 30), "sign: sign pod created")
    p = (w.created_by("SignImage") or [None])[0]
    if p:
        c = p["spec"]["containers"][0]
        mounts = {(m["name"], m["mountPath"]) for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in p["spec"]["volumes"]}
        df = p["metadata"].get("annotations", {}).get("dockerfile", "")
        t.ok(p["metadata"]["name"] == pname and c["image"] == BUILD_IMAGE
             and c.get("args") == ["--destination", img, "--insecure", "--insecure-pull"]
             and {("key", "/run/secrets/key"), ("cert", "/run/secrets/cert"), ("dockerfile", "/workspace")} <= mounts
             and vols["key"]["secret"]["secretName"] == "op-bs-key"
             and f"FROM {unsigned}" in df and SIGN_IMAGE in df and "kmm-sign" in df,
             "sign: pod signs the unsigned image with the key and cert and pushes the result",
             json.dumps({"args": c.get("args"), "mounts": sorted(mounts), "dockerfile": df}, indent=1))
    else:
        t.ok(False, "sign: pod shape (no pod seen)")
    t.ok(wait(lambda: mbsc_result(ns, "sg", img) == ("SignImage", "Success"), 60),
         "sign: MBSC Success", get("modulebuildsignconfigs", ns, "sg"))
    t.ok(wait(lambda: mic_state(ns, "sg", img) == "Exists", 30) and wait(lambda: ready_on(ns, "sg", nodes), 60),
         "sign: MIC Exists, module loaded")
    t.ok(wait(lambda: events(ns, "sg", "SignimageCreated") and events(ns, "sg", "SignimageSucceeded"), 20),
         "sign: SignimageCreated and SignimageSucceeded events")
    rec = wait(lambda: (get("modulebuildsignconfigs", ns, "sg") or {}).get("metadata", {}).get(
        "annotations", {}).get("kmm.node.kubernetes.io/signed-with"), 20)
    t.ok(rec and img in json.loads(rec), "sign: digests of the key and cert used recorded on the MBSC", rec)
    n0 = settle(w, "SignImage", 5)
    t.ok(n0 == 1, "sign: one sign pod, no loop", n0)
    # Rotation: exactly one new sign pod, then quiet.
    secret(ns, "op-bs-key", {"key": "KEY-2"})
    t.ok(wait(lambda: len(w.created_by("SignImage")) >= 2, 30), "key rotation: a new sign pod")
    rec2 = wait(lambda: (lambda r: r if r and r != rec else None)(
        (get("modulebuildsignconfigs", ns, "sg") or {}).get("metadata", {}).get("annotations", {}).get(
            "kmm.node.kubernetes.io/signed-with")), 30)
    t.ok(rec2 and mbsc_result(ns, "sg", img) == ("SignImage", "Success"),
         "key rotation: signed again with the new key, Success recorded", rec2)
    n1 = settle(w, "SignImage")
    t.ok(n1 == 2, "key rotation: exactly one new sign pod, not a loop", n1)
    t.ok(ready_on(ns, "sg", nodes) and mic_state(ns, "sg", img) == "Exists",
         "key rotation: module stays loaded, image Exists throughout")
    w.close()


@case
def build_then_sign():
    ns = new_ns("op-bs-bs")
    nodes = add_nodes("op-bs-bs-n", 1, K1, ["op-bs/bs=yes", "op-bs/bs-builder=yes"])
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\n")
    secret(ns, "op-bs-key", {"key": "KEY-1"})
    secret(ns, "op-bs-cert", {"cert": "CERT-1"})
    img = f"{REG}/op-bs/bs-{RUN}:{K1}"
    w = bswatch(ns)
    sign = {"keySecret": {"name": "op-bs-key"}, "certSecret": {"name": "op-bs-cert"},
            "filesToSign": [f"/opt/lib/modules/{K1}/mod.ko"]}
    build = {"dockerfileConfigMap": {"name": "op-bs-dockerfile"}, "selector": {"op-bs/bs-builder": "yes"}}
    apply(module_obj(ns, "bs", {"op-bs/bs": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}],
                     build=build, sign=sign))
    t.ok(wait(lambda: mbsc_result(ns, "bs", img) == ("SignImage", "Success"), 60),
         "build+sign: build, then sign, then Success", get("modulebuildsignconfigs", ns, "bs"))
    t.ok(wait(lambda: mic_state(ns, "bs", img) == "Exists", 30) and wait(lambda: ready_on(ns, "bs", nodes), 60),
         "build+sign: MIC Exists, module loaded")
    b, sg = w.created_by("BuildImage"), w.created_by("SignImage")
    df = sg[0]["metadata"].get("annotations", {}).get("dockerfile", "") if sg else ""
    t.ok(len(b) == 1 and len(sg) == 1 and f"FROM {img}" in df,
         "build+sign: one build pod, one sign pod signing what the build pushed to the same tag",
         ([o["metadata"]["name"] for o in b + sg], df))
    w.close()


@case
def sign_failure():
    ns = new_ns("op-bs-sfail")
    nodes = add_nodes("op-bs-sfail-n", 1, K1, ["op-bs/sfail=yes"])
    secret(ns, "op-bs-key", {"key": "KEY-1"})
    secret(ns, "op-bs-cert", {"cert": "CERT-1"})
    unsigned = push_image(f"op-bs/sfail-unsigned-{RUN}:{K1}", [K1])
    img = f"{REG}/op-bs/sfail-{RUN}:{K1}"
    fail_policy("op-bs-sfail", ns, "SignImage")
    try:
        t.ok(wait(lambda: policy_active(ns, {RT: "SignImage"}), 30), "sign failure: admission policy active")
        w = bswatch(ns)
        apply(sign_module(ns, "sf", img, unsigned, {"op-bs/sfail": "yes"}))
        t.ok(wait(lambda: mbsc_result(ns, "sf", img) == ("SignImage", "Failure"), 60),
             "sign failure: MBSC Failure", get("modulebuildsignconfigs", ns, "sf"))
        t.ok(wait(lambda: mic_state(ns, "sf", img) == "DoesNotExist", 30), "sign failure: MIC DoesNotExist")
        n = settle(w, "SignImage")
        mb = get("modulebuildsignconfigs", ns, "sf") or {}
        acts = [i.get("action") for i in mb.get("spec", {}).get("images", [])]
        t.ok(acts == ["SignImage"] and not w.created_by("BuildImage"),
             "sign failure: no BuildImage requested without a build section (upstream quirk fixed)", acts)
        t.ok(n == 1, "sign failure: one sign pod, not retried", n)
        ev = events(ns, "sf", "SignimageFailed")
        t.ok(ev and ev[0]["type"] == "Warning" and events(ns, "sf", "SignFailed"),
             "sign failure: Warning SignimageFailed / SignFailed events")
        c = cond(ns, "sf", "Ready")
        t.ok("sign failed" in c.get("message", "") and nmc_entry(nodes[0], "spec", ns, "sf") is None,
             "sign failure: Ready condition says so, no NMC entry", c)
        w.close()
    finally:
        drop_policy("op-bs-sfail")


@case
def missing_without_build():
    ns = new_ns("op-bs-miss")
    add_nodes("op-bs-miss-n", 1, K1, ["op-bs/miss=yes"])
    img = f"{REG}/op-bs/missing-{RUN}:{K1}"
    w = bswatch(ns)
    apply(module_obj(ns, "ms", {"op-bs/miss": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}]))
    t.ok(wait(lambda: mic_state(ns, "ms", img) == "DoesNotExist", 30), "missing image: MIC DoesNotExist")
    ev = wait(lambda: events(ns, "ms", "ImageDoesNotExist"), 20) or [{}]
    t.ok(ev[0].get("type") == "Warning" and img in ev[0].get("message", ""),
         "missing image: Warning event on the Module naming the image", ev[0])
    c = wait(lambda: "does not exist" in cond(ns, "ms", "Ready").get("message", "") and cond(ns, "ms", "Ready"), 20)
    t.ok(c, "missing image: Ready condition says so", cond(ns, "ms", "Ready"))
    t.ok(get("modulebuildsignconfigs", ns, "ms") is None and not kj("get", "pods", "-n", ns)["items"],
         "missing image: no MBSC, no pod of any kind")
    w.close()


@case
def restart_and_delete_during_build():
    ns = new_ns("op-bs-del")
    add_nodes("op-bs-del-n", 1, K1, ["op-bs/del=yes"])
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\n")
    img = f"{REG}/op-bs/del-{RUN}:{K1}"
    w = bswatch(ns)
    build = {"dockerfileConfigMap": {"name": "op-bs-dockerfile"}, "selector": {"op-bs/del-builder": "yes"}}
    apply(module_obj(ns, "dl", {"op-bs/del": "yes"},
                     [{"regexp": "^.+$", "containerImage": img, "registryTLS": {"insecure": True}}], build=build))
    pname = f"dl-build-{K1_DNS}"
    p = wait(lambda: pod(ns, pname), 30)
    t.ok(p is not None, "restart: build pod pending")
    uid = (p or {}).get("metadata", {}).get("uid")
    # A restarted operator adopts the pending pod: same uid, no second pod, no second Created event.
    rc = OPS[-1].stop()
    t.ok(rc == 0 and new_operator().ports() is not None, "restart: operator restarted")
    n = settle(w, "BuildImage")
    p = pod(ns, pname) or {}
    t.ok(n == 1 and p.get("metadata", {}).get("uid") == uid and len(events(ns, "dl", "BuildimageCreated")) == 1,
         "restart: the pending build pod is adopted, not recreated", (n, uid, p.get("metadata", {}).get("uid")))
    # Deleting the Module while it builds: MIC, MBSC and the pod go (finalizers released), nothing stays.
    kubectl("delete", "modules.kmm.sigs.x-k8s.io", "-n", ns, "dl", "--wait=false")
    gone = wait(lambda: module(ns, "dl") is None and get("moduleimagesconfigs", ns, "dl") is None
                and get("modulebuildsignconfigs", ns, "dl") is None and pod(ns, pname) is None, 90)
    t.ok(gone, "delete during a build: Module, MIC, MBSC and build pod all gone",
         [x for x in ("modules", "moduleimagesconfigs", "modulebuildsignconfigs")
          if get(x, ns, "dl")] + ([pname] if pod(ns, pname) else []))
    w.close()


@case
def push_built_image_false():
    """A MIC as a PreflightValidation writes it: build without pushing."""
    ns = new_ns("op-bs-nopush")
    dockerfile_cm(ns, "op-bs-dockerfile", "FROM scratch\n")
    img = f"{REG}/op-bs/nopush-{RUN}:{K1}"
    apply({"apiVersion": "kmm.sigs.x-k8s.io/v1beta1", "kind": "ModuleImagesConfig",
           "metadata": {"name": "np", "namespace": ns},
           "spec": {"pushBuiltImage": False, "images": [
               {"image": img, "kernelVersion": K1, "registryTLS": {"insecure": True},
                "build": {"dockerfileConfigMap": {"name": "op-bs-dockerfile"},
                          "selector": {"op-bs/never": "yes"}}}]}})
    p = wait(lambda: pod(ns, f"np-build-{K1_DNS}"), 30)
    args = p["spec"]["containers"][0].get("args", []) if p else []
    t.ok(p and "--no-push" in args and "--destination" not in args,
         "pushBuiltImage false: build pod runs with --no-push", args)


def quiet_after_everything(op):
    """With every build and sign settled (failed ones kept, missing images re-checked
    against the registry), the operator writes nothing: no status flapping, no loop.
    GETs are not counted: MBSCs with a sign entry or a failed build re-read their
    Secrets and Dockerfile every 10 s (docs/operator.md, "Secrets and ConfigMaps")."""
    def requests():
        _, body = op.get("/metrics")
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines()
                   if ln.startswith("rest_client_requests_total{") and 'method="GET"' not in ln)

    def settled():
        pods = [p for ns in NAMESPACES for p in (kj("get", "pods", "-n", ns, check=False) or {"items": []})["items"]]
        return not [p for p in pods if p["metadata"].get("deletionTimestamp")]
    wait(settled, GC_DELAY_S + 30)
    time.sleep(3)  # the last releases' own watch events
    r0 = requests()
    time.sleep(15)
    r1 = requests()
    t.ok(r1 == r0, f"steady state: no API writes in 15 s with builds and signs done ({r1 - r0:.0f})")


def main():
    preflight()
    p = kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/moduleimagesconfigs.kmm.sigs.x-k8s.io", "crd/modulebuildsignconfigs.kmm.sigs.x-k8s.io",
                check=False)
    kubectl("create", "namespace", "op-bs-system", check=False)
    NAMESPACES.append("op-bs-system")
    op = new_operator()
    try:
        t.ok(op.ports() is not None and p is not None, "operator: started", op.logtext()[-2000:])
        for fn in CASES:
            try:
                fn()
            except Exception:  # noqa: BLE001 - one broken case must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
        op = OPS[-1]
        quiet_after_everything(op)
        st, body = op.get("/metrics")
        want = ['controller_runtime_reconcile_total{controller="moduleimagesconfig"',
                'controller_runtime_reconcile_total{controller="modulebuildsignconfig"',
                "kmm_in_cluster_build_num 3", "kmm_in_cluster_sign_num 3"]
        missing = [x for x in want if x not in body]
        t.ok(st == 200 and not missing, "operator: /metrics has the MIC and MBSC controllers and build/sign gauges",
             f"missing: {missing}")
    finally:
        rc = OPS[-1].stop()
        t.ok(rc == 0, "operator: SIGTERM exits 0", OPS[-1].logtext()[-3000:])
        san = [ln for o in OPS for ln in o.logtext().splitlines()
               if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln or "LeakSanitizer" in ln]
        t.ok(not san, "operator: no sanitizer reports", "\n".join(san[:20]))
        for ns in NAMESPACES:
            force_cleanup(ns, [])
        force_cleanup("op-bs-none", NODES)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
