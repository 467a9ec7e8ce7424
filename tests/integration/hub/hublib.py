# SPDX-License-Identifier: Apache-2.0
"""Shared by tests/integration/hub/*.t: OCM's own CRDs (read from the Go module
open-cluster-management.io/api, fetched through the Go module proxy into kmm's
cache, never copied into the repository), kmm's hub CRD, and a kmm-operator
started with extra arguments (--hub)."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "operator"))
import oplib  # noqa: E402

OCM_API = "open-cluster-management.io/api@v1.1.0"
OCM_CRDS = [
    "cluster/v1/0000_00_clusters.open-cluster-management.io_managedclusters.crd.yaml",
    "cluster/v1alpha1/0000_02_clusters.open-cluster-management.io_clusterclaims.crd.yaml",
    "work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml",
]
OCM_CRD_NAMES = ["managedclusters.cluster.open-cluster-management.io",
                 "clusterclaims.cluster.open-cluster-management.io",
                 "manifestworks.work.open-cluster-management.io"]
MCM = "managedclustermodules.hub.kmm.sigs.x-k8s.io"
MW = "manifestworks.work.open-cluster-management.io"
MC = "managedclusters.cluster.open-cluster-management.io"
CLAIM = "clusterclaims.cluster.open-cluster-management.io"
MIC = "moduleimagesconfigs.kmm.sigs.x-k8s.io"
KERNEL_CLAIM = "kernel-versions.kmm.node.kubernetes.io"
MCM_LABEL = "kmm.node.kubernetes.io/managedclustermodule.name"


def go_env():
    cache = os.path.join(os.environ.get("KMM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kmm"), "go")
    return dict(os.environ, GOMODCACHE=os.path.join(cache, "mod"),
                GOPATH=os.path.join(cache, "path"), GOCACHE=os.path.join(cache, "build"),
                GOFLAGS="", GOWORK="off", GOTOOLCHAIN="local")


def ocm_module_dir():
    """The module's directory in the Go module cache (downloaded once)."""
    go = "go" if subprocess.run(["sh", "-c", "command -v go"], capture_output=True).returncode == 0 \
        else "/usr/local/go/bin/go"
    p = subprocess.run([go, "mod", "download", "-json", OCM_API], capture_output=True, text=True,
                       env=go_env(), cwd="/", timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"go mod download {OCM_API}: {p.stderr.strip() or p.stdout.strip()}")
    return json.loads(p.stdout)["Dir"]


def install_crds():
    """OCM's CRDs and kmm's (with the hub's); bails when any cannot be had."""
    oplib.preflight()
    try:
        d = ocm_module_dir()
    except Exception as e:  # noqa: BLE001
        oplib.bail(f"OCM's CRDs: {e}")
    for f in OCM_CRDS:
        p = subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-f",
                            os.path.join(d, f)], capture_output=True, text=True)
        if p.returncode != 0:
            oplib.bail(f"cannot apply {f}: {p.stderr.strip()}")
    hub = os.path.join(oplib.SRC, "deploy", "crd", "hub")
    p = subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-k", hub],
                       capture_output=True, text=True)
    if p.returncode != 0:
        oplib.bail(f"cannot install {hub}: {p.stderr.strip()}")
    p = subprocess.run(["kubectl", "wait", "--for=condition=Established", "--timeout=60s",
                        *(f"crd/{n}" for n in OCM_CRD_NAMES + [MCM])],
                       capture_output=True, text=True)
    if p.returncode != 0:
        oplib.bail(f"CRDs not established: {p.stderr.strip()}")


class Operator(oplib.Operator):
    """oplib's operator with extra command-line arguments."""

    def __init__(self, name, namespace, args=(), **kw):
        super().__init__(name, namespace, **kw)
        self.args = list(args)

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([oplib.OPERATOR, "--config-file", self.cfg.name, *self.args],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self


def managed_cluster(name, labels, kernels=None):
    """A ManagedCluster as OCM's registration would leave it: labels, and the
    kernel claim in status.clusterClaims when kernels is given."""
    oplib.apply({"apiVersion": "cluster.open-cluster-management.io/v1", "kind": "ManagedCluster",
                 "metadata": {"name": name, "labels": labels},
                 "spec": {"hubAcceptsClient": True}})
    if kernels is not None:
        set_claim(name, kernels)


def set_claim(cluster, kernels):
    claims = [{"name": "id.k8s.io", "value": cluster}]
    if kernels:
        claims.append({"name": KERNEL_CLAIM, "value": "\n".join(kernels)})
    oplib.kubectl("patch", MC, cluster, "--subresource=status", "--type=merge", "-p",
                  json.dumps({"status": {"clusterClaims": claims}}))


def manifest_work(ns, name):
    return oplib.kj("get", MW, "-n", ns, name, "--ignore-not-found")


def remove_hub_crd():
    """The MCM CRD goes at the end: its name ends in .kmm.sigs.x-k8s.io, which the
    deploy suites' "nothing of kmm is left" checks count (OCM's CRDs may stay)."""
    oplib.kubectl("delete", "crd", MCM, "--ignore-not-found", "--wait=false", check=False)


class ServiceAccount:
    """A ServiceAccount bound to the ClusterRoles of the given install files (copies named
    hubtest-*, unlabelled, so that no "nothing of kmm is left" check counts them) and a
    kubeconfig with its token: the operator runs with the install's RBAC and no more."""

    def __init__(self, ns, name, role_files):
        self.ns, self.name, self.objs = ns, name, []
        oplib.kubectl("create", "serviceaccount", name, "-n", ns, check=False)
        for f in role_files:
            out = oplib.kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
            dec, i, items = json.JSONDecoder(), 0, []
            while out[i:].strip():
                o, i = dec.raw_decode(out, len(out) - len(out[i:].lstrip()))
                items.extend(o["items"] if o.get("kind") == "List" else [o])
            for o in items:
                if o["kind"] != "ClusterRole":
                    continue
                role = f"hubtest-{name}-{o['metadata']['name']}"
                self.objs += [("clusterrole", role), ("clusterrolebinding", role)]
                oplib.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                             "metadata": {"name": role}, "rules": o["rules"]})
                oplib.apply({"apiVersion": "rbac.authorization.k8s.io/v1",
                             "kind": "ClusterRoleBinding", "metadata": {"name": role},
                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                         "kind": "ClusterRole", "name": role},
                             "subjects": [{"kind": "ServiceAccount", "name": name,
                                           "namespace": ns}]})
        token = oplib.kubectl("create", "token", name, "-n", ns, "--duration=2h").strip()
        cfg = json.loads(oplib.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
        cfg["users"] = [{"name": name, "user": {"token": token}}]
        cfg["contexts"][0]["context"]["user"] = name
        fd, self.kubeconfig = tempfile.mkstemp(prefix="kmm-hubtest-", suffix=".kubeconfig")
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f)

    def remove(self):
        for kind, name in self.objs:
            oplib.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        os.unlink(self.kubeconfig)


def run_main(t, main):
    """Runs a suite's main(): a crash is a failed case with its traceback, and
    the process exits with the plan's verdict."""
    import traceback
    try:
        main()
    except Exception as e:  # noqa: BLE001
        t.ok(False, f"suite crashed: {e}")
        t.diag(traceback.format_exc())
    sys.exit(t.finish())
