#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A registry front on 127.0.0.1 for registry.t, in front of the plain testenv
registry, that misbehaves on purpose. The first repository component picks
the behaviour, the rest is the real repository:

    /v2/redirect/R/...         manifests proxied; blobs answered with a 307 to
                               the real registry (another port, like object
                               storage behind a registry)
    /v2/tamper-blob/R/...      blobs proxied with their last byte flipped
    /v2/long-blob/R/...        blobs proxied with 16 extra bytes
    /v2/tamper-manifest/R/...  manifests proxied with a byte appended
    /v2/stall-blob/R/...       blobs: headers and 10 bytes, then silence (60 s)
    /v2/redirect-metadata/...  a 307 to http://169.254.169.254/latest/meta-data/
                               (the client must refuse it before connecting)
    /v2/realm-metadata/...     a 401 naming a token realm on 169.254.169.254
    /v2/hostile-error/...      a 500 whose error document carries escape
                               sequences, markup and 20 KiB of text

    front.py UPSTREAM PORTFILE   serves until killed (at most 5 minutes)
"""
import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.request

upstream, portfile = sys.argv[1], sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, with_body):
        parts = self.path.split("/", 3)  # "", "v2", mode, rest
        if len(parts) < 4 or parts[1] != "v2":
            self.send_response(200 if self.path.rstrip("/") == "/v2" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        mode, rest = parts[2], "/v2/" + parts[3]
        if mode == "redirect-metadata":
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "realm-metadata":
            self.send_response(401)
            self.send_header("WWW-Authenticate",
                             'Bearer realm="http://169.254.169.254/latest/api/token",service="x"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hostile-error":
            body = json.dumps({"errors": [{"code": "EVIL\u001b[2J<b>",
                                           "message": "\u001b]0;pwned\u0007<script>x</script>" + "A" * 20000}]})
            data = body.encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Long", "B" * 4000)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)
            return
        if mode == "redirect" and "/blobs/" in rest:
            self.send_response(307)
            self.send_header("Location", "http://%s%s" % (upstream, rest))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = urllib.request.Request("http://%s%s" % (upstream, rest), method=self.command,
                                     headers={"Accept": self.headers.get("Accept", "")})
        try:
            r = urllib.request.urlopen(req, timeout=10)
            status = r.status
        except urllib.error.HTTPError as e:
            r, status = e, e.code
        data = r.read()
        if status == 200 and self.command == "GET":
            if mode == "tamper-blob" and "/blobs/" in rest and data:
                data = data[:-1] + bytes([data[-1] ^ 0x55])
            elif mode == "long-blob" and "/blobs/" in rest:
                data += b"\0" * 16
            elif mode == "tamper-manifest" and "/manifests/" in rest:
                data += b" "
        if mode == "stall-blob" and "/blobs/" in rest and status == 200 and with_body:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:10])
            self.wfile.flush()
            time.sleep(60)
            return
        self.send_response(status)
        for h in ("Content-Type", "Docker-Content-Digest"):
            if r.headers.get(h):
                self.send_header(h, r.headers.get(h))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402
os.rename(portfile + ".tmp", portfile)
threading.Timer(300, server.shutdown).start()
server.serve_forever()
