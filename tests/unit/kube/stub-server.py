#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Stub apiserver for the declarative wire cases in tests/data/kube/.

stub-server.py CASE.json LOG.jsonl: listens on 127.0.0.1 (plain HTTP/1.1,
keep-alive), prints the port on stdout, answers requests with the case's
"responses" in order (the last one repeats), and appends every request it
receives to LOG.jsonl as {"method", "path", "headers", "body"}. Stops when
stdin closes.
"""
import http.server
import json
import sys
import threading

case = json.load(open(sys.argv[1]))
log_path = sys.argv[2]
responses = case.get("responses", [{"status": 200, "body": {}}])
lock = threading.Lock()
served = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else None
        with lock:
            i = min(served[0], len(responses) - 1)
            served[0] += 1
            with open(log_path, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body}) + "\n")
        r = responses[i]
        if "body_text" in r:
            data = r["body_text"].encode()
        elif "body_repeat" in r:
            data = (r["body_repeat"] * r.get("times", 1)).encode()
        else:
            data = json.dumps(r.get("body", {})).encode()
        self.send_response(r.get("status", 200))
        for k, v in r.get("headers", {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", r.get("content_type", "application/json"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Cases that test caps make the client hang up mid-body; that is the point.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
server.shutdown()
