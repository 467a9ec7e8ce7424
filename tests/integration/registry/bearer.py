#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A distribution registry that wants Bearer tokens, and the token server.

    bearer.py WORKDIR [REALM]
                          starts both on free 127.0.0.1 ports, waits until the
                          registry answers /v2/ with a Bearer challenge, and
                          prints shell assignments: BEARER_REGISTRY host:port,
                          BEARER_USER, BEARER_PASSWORD, BEARER_CA (the token
                          server's certificate), BEARER_REQUESTS (a file with
                          one line per token request: "basic" when it carried
                          Basic credentials, else "none"), BEARER_PIDS (kill it
                          to stop both; both also stop by themselves after 10 min).

REALM is how the registry names the token server in its challenge:
  https            https://127.0.0.1:PORT/token (default)
  http             http://127.0.0.1:PORT/token (the token server speaks plain http)
  https-localhost  https://localhost:PORT/token (another host name than the registry's)

distribution 2.8's auth.token verifies a JWT whose x5c certificate chains to
auth.token.rootcertbundle: the key pair is made with openssl, tokens are signed
RS256 with `openssl dgst -sha256 -sign` (python3 stdlib has no RSA). The token
endpoint checks Basic credentials and grants the scopes asked for.
"""
import base64
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ISSUER = "kmm-test-issuer"
SERVICE = "kmm-bearer-registry"
LIFETIME = 600


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(workdir, token_port, registry_port, user, password, tls):
    key = os.path.join(workdir, "token.key")
    with open(os.path.join(workdir, "token.crt.der"), "rb") as f:
        x5c = base64.b64encode(f.read()).decode()

    def make_token(sub, scopes):
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) >= 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                               "actions": parts[-1].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
        claims = {"iss": ISSUER, "sub": sub, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                             stdout=subprocess.PIPE, check=True).stdout
        return signing_input + "." + b64url(sig)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("token: " + (fmt % args) + "\n")

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = urllib.parse.parse_qs(url.query)
            want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
            got = self.headers.get("Authorization") or ""
            with open(os.path.join(workdir, "token-requests.log"), "a") as f:
                f.write("basic\n" if got.lower().startswith("basic") else "none\n")
            if url.path != "/token":
                self.send_error(404)
                return
            if self.headers.get("Authorization") != want:
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            scopes = []
            for s in q.get("scope", []):
                scopes.extend(s.split(" "))
            tok = make_token(user, scopes)
            body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", token_port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(workdir, "tls.crt"), os.path.join(workdir, "tls.key"))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    registry = subprocess.Popen(["docker-registry", "serve", os.path.join(workdir, "config.yml")],
                                stdout=open(os.path.join(workdir, "registry.log"), "w"),
                                stderr=subprocess.STDOUT)

    def stop(*_):
        registry.terminate()
        try:
            registry.wait(5)
        except subprocess.TimeoutExpired:
            registry.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Timer(LIFETIME, stop).start()
    httpd.serve_forever()


def main():
    if len(sys.argv) == 8 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6],
              sys.argv[7] == "tls")
        return 0
    realm = sys.argv[2] if len(sys.argv) == 3 else "https"
    if len(sys.argv) not in (2, 3) or realm not in ("https", "http", "https-localhost"):
        print(__doc__, file=sys.stderr)
        return 2
    for c in ("openssl", "docker-registry"):
        if not shutil.which(c):
            print("%s not found; run scripts/install-deps" % c, file=sys.stderr)
            return 1
    workdir = os.path.abspath(sys.argv[1])
    os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kmm-test-token-signer",
                    "-keyout", os.path.join(workdir, "token.key"),
                    "-out", os.path.join(workdir, "token.crt")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "x509", "-in", os.path.join(workdir, "token.crt"), "-outform", "DER",
                    "-out", os.path.join(workdir, "token.crt.der")], check=True)
    # The token server's own certificate, for both names a realm may use.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", os.path.join(workdir, "tls.key"),
                    "-out", os.path.join(workdir, "tls.crt")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(os.path.join(workdir, "token-requests.log"), "w").close()
    token_port, registry_port = free_port(), free_port()
    user, password = "kmm-bearer", secrets.token_hex(8)
    with open(os.path.join(workdir, "config.yml"), "w") as f:
        f.write("""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {d}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{rp}
  secret: {secret}
auth:
  token:
    realm: {scheme}://{host}:{tp}/token
    service: {service}
    issuer: {issuer}
    rootcertbundle: {d}/token.crt
""".format(d=workdir, rp=registry_port, tp=token_port, service=SERVICE, issuer=ISSUER,
           scheme="http" if realm == "http" else "https",
           host="localhost" if realm == "https-localhost" else "127.0.0.1",
           secret=secrets.token_hex(16)))
    log = open(os.path.join(workdir, "serve.log"), "w")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", workdir,
                             str(token_port), str(registry_port), user, password,
                             "plain" if realm == "http" else "tls"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/v2/" % registry_port, timeout=1)
        except urllib.error.HTTPError as e:
            if e.code == 401 and "Bearer" in e.headers.get("WWW-Authenticate", ""):
                break
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    else:
        proc.terminate()
        print("bearer registry did not come up; see %s" % workdir, file=sys.stderr)
        return 1
    if proc.poll() is not None:
        print("token server exited: %s" % open(os.path.join(workdir, "serve.log")).read(), file=sys.stderr)
        return 1
    print("BEARER_REGISTRY=127.0.0.1:%d" % registry_port)
    print("BEARER_USER=%s" % user)
    print("BEARER_PASSWORD=%s" % password)
    print("BEARER_CA=%s" % os.path.join(workdir, "tls.crt"))
    print("BEARER_REQUESTS=%s" % os.path.join(workdir, "token-requests.log"))
    print("BEARER_PIDS=%d" % proc.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
