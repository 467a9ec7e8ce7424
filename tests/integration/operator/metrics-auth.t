#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-operator's /metrics as upstream serves it: HTTPS (self-signed, or the
pair of --metrics-cert-dir, reloaded when it changes) and every request
authenticated by a TokenReview and authorized by a SubjectAccessReview on the
real apiserver; plain HTTP when metrics.secureServing is false."""

import os
import re
import ssl
import subprocess
import sys
import tempfile
import traceback
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oplib import OPERATOR, Operator, Tap, apply, kubectl, preflight, wait  # noqa: E402

t = Tap()
NS = f"kmm-metrics-auth-{os.getpid()}"
ROLE = f"kmm-metrics-reader-{os.getpid()}"
OPERATORS = []


class MetricsOperator(Operator):
    """An operator with its own metrics settings and extra flags."""

    def __init__(self, name, metrics_lines, args=()):
        super().__init__(name, NS)
        # Distinct strings: the same address for both would put /metrics on the probes server.
        lines = ["healthProbeBindAddress: localhost:0", "metrics:",
                 "  bindAddress: 127.0.0.1:0"] + [f"  {x}" for x in metrics_lines] + [
                 "leaderElection:", "  enabled: false"]
        with open(self.cfg.name, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.args = list(args)
        OPERATORS.append(self)

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([OPERATOR, "--config-file", self.cfg.name] + self.args,
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        return self

    def serving(self):
        """(healthPort, metricsPort, scheme, authn) from the startup line."""
        def find():
            with open(self.log) as f:
                for line in f:
                    m = re.search(r"healthPort=(\d+) metricsPort=(\d+) metricsScheme=(\w+) "
                                  r"metricsAuthnAuthz=(\w+)", line)
                    if m:
                        return int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            return None if self.alive() else False
        return wait(find, 60)


def fetch(url, token=None, cadata=None, insecure=False):
    """(status, body, error) of one GET; status None when no HTTP answer came."""
    ctx = None
    if url.startswith("https:"):
        if insecure:
            ctx = ssl._create_unverified_context()  # noqa: S323 - checked separately
        else:
            ctx = ssl.create_default_context(cadata=cadata)
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
            return r.status, r.read().decode(), None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), None
    except Exception as e:  # noqa: BLE001 - TLS and connection errors are outcomes here
        return None, "", repr(e)


def served_cert(port):
    return ssl.get_server_certificate(("127.0.0.1", port))


def make_pair(d, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", os.path.join(d, "tls.key.new"),
                    "-out", os.path.join(d, "tls.crt.new"), "-days", "1", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    # Key first, then certificate, each replaced atomically.
    os.replace(os.path.join(d, "tls.key.new"), os.path.join(d, "tls.key"))
    os.replace(os.path.join(d, "tls.crt.new"), os.path.join(d, "tls.crt"))
    with open(os.path.join(d, "tls.crt")) as f:
        return f.read()


def same_cert(a, b):
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


def setup_rbac():
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for sa in ("reader", "stranger"):
        apply({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": sa, "namespace": NS}})
    apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": ROLE},
           "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
    apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": ROLE},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                       "name": ROLE},
           "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}]})
    reader = kubectl("create", "token", "reader", "-n", NS).strip()
    stranger = kubectl("create", "token", "stranger", "-n", NS).strip()
    # RBAC is applied asynchronously by the authorizer's informers.
    ok = wait(lambda: kubectl("auth", "can-i", "get", "/metrics",
                              f"--as=system:serviceaccount:{NS}:reader",
                              check=False).strip() == "yes", 60)
    if not ok:
        raise RuntimeError("the reader ServiceAccount never got get on /metrics")
    return reader, stranger


def start(op, what):
    op.start()
    s = op.serving()
    t.ok(bool(s), f"{what}: operator started and serves metrics", op.logtext()[-3000:])
    return s


def case_https_authn_authz(reader, stranger):
    op = MetricsOperator("metrics-https", [])  # upstream defaults: HTTPS + authn/authz
    s = start(op, "defaults")
    if not s:
        return
    hp, mp, scheme, auth = s
    t.ok(scheme == "https" and auth == "true", "defaults: HTTPS with authn/authz",
         f"scheme={scheme} authn={auth}")
    pem = served_cert(mp)
    url = f"https://127.0.0.1:{mp}/metrics"
    # The self-signed certificate verifies against itself for 127.0.0.1 (its SAN).
    st, body, err = fetch(url, reader, cadata=pem)
    t.ok(st == 200 and re.search(r"^# TYPE kmm_module_num gauge$", body, re.M),
         "HTTPS: reader ServiceAccount gets 200 with kmm_module_num (certificate verified)",
         f"status={st} err={err} body={body[:300]}")
    st, _, err = fetch(f"http://127.0.0.1:{mp}/metrics", reader)
    t.ok(st is None or st >= 400, "HTTPS: plain HTTP to the metrics port is not served",
         f"status={st}")
    st, body, err = fetch(url, None, cadata=pem)
    t.ok(st == 401, "no token: 401", f"status={st} err={err} body={body[:200]}")
    st, body, err = fetch(url, "not-a-token", cadata=pem)
    t.ok(st == 401, "invalid token: 401", f"status={st} err={err} body={body[:200]}")
    st, body, err = fetch(url, reader[:-4] + "AAAA", cadata=pem)
    t.ok(st == 401, "tampered ServiceAccount token: 401", f"status={st} err={err}")
    st, body, err = fetch(url, stranger, cadata=pem)
    t.ok(st == 403, "ServiceAccount without get on /metrics: 403",
         f"status={st} err={err} body={body[:200]}")
    # Again, from the cache this time: the answers must not change.
    answers = [fetch(url, tok, cadata=pem)[0] for tok in (reader, stranger, "not-a-token", None)]
    t.ok(answers == [200, 403, 401, 401], "repeated requests give the same answers",
         f"answers={answers}")
    st, body, err = fetch(f"http://127.0.0.1:{hp}/healthz")
    t.ok(st == 200, "probes: plain HTTP without authentication", f"status={st} err={err}")
    log = op.logtext()
    t.ok(reader not in log and stranger not in log, "tokens never appear in the log")
    t.ok(op.stop() == 0, "defaults: clean exit on SIGTERM", op.logtext()[-2000:])


def case_cert_dir(reader):
    d = tempfile.mkdtemp(prefix="kmm-metrics-certs-")
    first = make_pair(d, "kmm-metrics-first")
    op = MetricsOperator("metrics-certdir", [], ["--metrics-cert-dir", d])
    s = start(op, "--metrics-cert-dir")
    if not s:
        return
    _, mp, scheme, _ = s
    url = f"https://127.0.0.1:{mp}/metrics"
    t.ok(scheme == "https" and same_cert(served_cert(mp), first),
         "--metrics-cert-dir: serves tls.crt of the directory", f"scheme={scheme}")
    st, body, err = fetch(url, reader, cadata=first)
    t.ok(st == 200 and "kmm_module_num" in body, "--metrics-cert-dir: verified, authorized 200",
         f"status={st} err={err}")
    second = make_pair(d, "kmm-metrics-second")
    rotated = wait(lambda: same_cert(served_cert(mp), second), 90, 0.5)
    t.ok(rotated, "--metrics-cert-dir: a rotated pair is served on the same port",
         op.logtext()[-2000:])
    st, body, err = fetch(url, reader, cadata=second)
    t.ok(st == 200, "--metrics-cert-dir: the new certificate verifies", f"status={st} err={err}")
    t.ok(op.stop() == 0, "--metrics-cert-dir: clean exit on SIGTERM", op.logtext()[-2000:])


def case_plain(reader, stranger):
    op = MetricsOperator("metrics-plain-auth", ["secureServing: false"])
    s = start(op, "secureServing=false")
    if s:
        _, mp, scheme, auth = s
        url = f"http://127.0.0.1:{mp}/metrics"
        t.ok(scheme == "http" and auth == "true", "secureServing=false: plain HTTP, authn/authz on",
             f"scheme={scheme} authn={auth}")
        answers = [fetch(url, tok)[0] for tok in (None, "not-a-token", stranger)]
        st, body, err = fetch(url, reader)
        t.ok(answers == [401, 401, 403] and st == 200 and "kmm_module_num" in body,
             "secureServing=false: 401/401/403 for none/invalid/stranger, 200 for the reader",
             f"answers={answers} reader={st} err={err}")
        t.ok(op.stop() == 0, "secureServing=false: clean exit", op.logtext()[-2000:])
    op = MetricsOperator("metrics-open", ["secureServing: false", "enableAuthnAuthz: false"])
    s = start(op, "secureServing=false enableAuthnAuthz=false")
    if s:
        _, mp, scheme, auth = s
        st, body, err = fetch(f"http://127.0.0.1:{mp}/metrics")
        t.ok(scheme == "http" and auth == "false" and st == 200 and "kmm_module_num" in body,
             "both off: plain HTTP without a token gets 200", f"status={st} err={err}")
        t.ok(op.stop() == 0, "both off: clean exit", op.logtext()[-2000:])


def cleanup():
    for op in OPERATORS:
        op.kill()
    kubectl("delete", "clusterrolebinding", ROLE, "--ignore-not-found", check=False)
    kubectl("delete", "clusterrole", ROLE, "--ignore-not-found", check=False)
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false", check=False)


def main():
    preflight()
    try:
        reader, stranger = setup_rbac()
        for fn, args in ((case_https_authn_authz, (reader, stranger)), (case_cert_dir, (reader,)),
                         (case_plain, (reader, stranger))):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one case failing must not hide the others
                t.ok(False, f"{fn.__name__}: raised", traceback.format_exc())
    except Exception:  # noqa: BLE001
        t.ok(False, "setup", traceback.format_exc())
    finally:
        cleanup()
    reports = [op.name for op in OPERATORS
               if re.search(r"ERROR: AddressSanitizer|runtime error:", op.logtext())]
    t.ok(not reports, "no sanitizer reports", f"in the logs of {reports}")
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
