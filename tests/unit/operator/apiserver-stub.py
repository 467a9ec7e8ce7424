#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Stub apiserver for the declarative reconciler cases in tests/data/operator/.

apiserver-stub.py: listens on 127.0.0.1 (plain HTTP/1.1, keep-alive) and prints
the port on stdout. Each line "CASE.json LOG.jsonl" on stdin loads a case (the
runner hands it over as JSON, whatever it was written in), forgetting the one
before, and is answered "ok" on stdout: one stub serves a whole run. Stops when
stdin closes. The case gives:

- "objects": the cluster. LIST answers from them (one page, honouring
  labelSelector), GET of one object too (404 Status when absent). Every
  object gets metadata.uid ("uid-<name>") and metadata.resourceVersion ("10")
  when it has none.
- "rules": answers to requests by "method" (GET, POST, PATCH, PUT, DELETE, and
  LIST and WATCH for collection reads) and "path" (a regular expression searched
  in the path without its query): "responses" are used one per matching request,
  in order ({"status", "headers", "body"}; a body-less error gets a Status; an
  entry {"default": true} takes the default answer); once used up, the default
  answer follows, or the last response again with "repeat": true.
- the default answers, on the stored objects: POST stores the body (name from
  generateName plus a counter when needed; uid, resourceVersion and
  creationTimestamp filled) and echoes it with 201, or 409 AlreadyExists;
  PATCH applies a merge patch (strategic and apply: as merge) or a JSON patch
  (a failed "test": 422) and answers 200 with the object, 404 when absent, 409
  Conflict when a merge patch names another metadata.resourceVersion; PUT
  replaces (200); DELETE answers 200 and removes the object, or only sets
  metadata.deletionTimestamp while finalizers remain (a patch that removes
  the last one then removes the object); 404 when absent. Every write bumps
  the object's resourceVersion.
- GET /version answers Kubernetes 1.37 (the operator asks it for the DRA gate).
- WATCH is held open with no events until the client hangs up or stdin closes.

Every request other than LIST and WATCH is appended to LOG.jsonl as
{"method", "path", "query", "headers", "body", "status"}, before it is answered.
"""
import copy
import http.server
import json
import os
import re
import select
import socket
import sys
import threading
import urllib.parse

lock = threading.Lock()

CLUSTER_SCOPED = {"Node", "Namespace", "NodeModulesConfig", "PreflightValidation", "DeviceClass"}
# What GET /version answers (the testenv's Kubernetes), unless a rule says otherwise.
SERVER_VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0"}
REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
           410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


def resource_of(obj):
    """(group, plural, namespace) of an object, from its apiVersion and kind."""
    api = obj.get("apiVersion", "v1")
    group = api.split("/")[0] if "/" in api else ""
    kind = obj.get("kind", "")
    ns = None if kind in CLUSTER_SCOPED else (obj.get("metadata") or {}).get("namespace", "default")
    plural = kind.lower() + ("es" if kind.lower().endswith("s") else "s")  # deviceclasses
    return group, plural, ns


store = {}  # (group, plural, ns, name) -> object
kinds = {}  # (group, plural) -> (apiVersion, kind)
rules = []
counter = {"rv": 100, "name": 0}
log_path = None


def load(case_path, log):
    """Makes the case's objects the cluster and its rules the answers."""
    global rules, log_path
    case = json.load(open(case_path))
    store.clear()
    kinds.clear()
    counter.update(rv=100, name=0)
    for o in case.get("objects", []):
        o = copy.deepcopy(o)
        md = o.setdefault("metadata", {})
        md.setdefault("uid", "uid-" + md.get("name", ""))
        md.setdefault("resourceVersion", "10")
        g, plural, ns = resource_of(o)
        store[(g, plural, ns, md.get("name"))] = o
        kinds[(g, plural)] = (o.get("apiVersion", "v1"), o.get("kind"))
    rules = [dict(r, used=0) for r in case.get("rules", [])]
    log_path = log


def parse_path(path):
    """(group, plural, namespace, name, subresource) of an API path."""
    segs = [s for s in path.split("/") if s]
    if segs[:2] == ["api", "v1"]:
        group, rest = "", segs[2:]
    elif segs[:1] == ["apis"] and len(segs) >= 3:
        group, rest = segs[1], segs[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    else:
        ns = None
    rest = rest + [None, None]
    return group, rest[0], ns, rest[1], rest[2]


def selector_matches(sel, labels):
    labels = labels or {}
    for term in filter(None, (t.strip() for t in re.split(r",(?![^()]*\))", sel or ""))):
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term)
        if m:
            vals = [v.strip() for v in m.group(3).split(",")]
            has = m.group(1) in labels and labels[m.group(1)] in vals
            if has != (m.group(2) == "in"):
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = re.split(r"==?", term, 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class PatchFailed(Exception):
    pass


def pointer(doc, path):
    """Parent container and last key of a JSON pointer."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    cur = doc
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    return cur, parts[-1]


def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        try:
            parent, key = pointer(doc, op["path"])
            if isinstance(parent, list):
                idx = len(parent) if key == "-" else int(key)
            if op["op"] == "test":
                have = parent[idx] if isinstance(parent, list) else parent[key]
                if have != op.get("value"):
                    raise PatchFailed("test failed at " + op["path"])
            elif op["op"] == "add":
                if isinstance(parent, list):
                    parent.insert(idx, op["value"])
                else:
                    parent[key] = op["value"]
            elif op["op"] == "remove":
                if isinstance(parent, list):
                    del parent[idx]
                else:
                    del parent[key]
            elif op["op"] == "replace":
                if isinstance(parent, list):
                    parent[idx] = op["value"]
                else:
                    if key not in parent:
                        raise KeyError(key)
                    parent[key] = op["value"]
            else:
                raise PatchFailed("unsupported op " + op["op"])
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise PatchFailed("path %s: %r" % (op.get("path"), e))
    return doc


def status_body(code, message, reason=None):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code}


def next_rv():
    counter["rv"] += 1
    return str(counter["rv"])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=None):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def hold_watch(self):
        """A watch stream that never delivers: open until the client hangs up or we exit."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            r, _, _ = select.select([self.connection], [], [], 1)
            if r:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return

    def rule_response(self, verb, path):
        for r in rules:
            if r.get("method", verb) != verb or not re.search(r.get("path", ""), path):
                continue
            resps = r.get("responses", [])
            if r["used"] < len(resps):
                r["used"] += 1
                return resps[r["used"] - 1]
            if r.get("repeat") and resps:
                return resps[-1]
        return None

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode("utf-8", "replace") if n else None
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parsed = parse_path(url.path)
        verb = self.command
        if verb == "GET" and parsed and parsed[3] is None:
            verb = "WATCH" if query.get("watch") in ("1", "true") else "LIST"
        with lock:
            resp = self.rule_response(verb, url.path)
            if resp is None or resp.get("default"):
                status, body, headers = self.default(verb, parsed, query, raw)
            else:
                status = resp.get("status", 200)
                body = resp.get("body", status_body(status, "stub rule") if status >= 400 else {})
                headers = resp.get("headers", {})
            if verb not in ("LIST", "WATCH"):
                try:
                    logged_body = json.loads(raw) if raw else None
                except ValueError:
                    logged_body = raw
                with open(log_path, "a") as f:
                    f.write(json.dumps({"method": self.command, "path": url.path, "query": query,
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": logged_body, "status": status}) + "\n")
        if status == "hold":
            self.hold_watch()
        else:
            self.reply(status, body, headers)

    def default(self, verb, parsed, query, raw):
        if verb == "GET" and urllib.parse.urlsplit(self.path).path == "/version":
            return 200, SERVER_VERSION, {}
        if not parsed or not parsed[1]:
            return 404, status_body(404, "no such path"), {}
        group, plural, ns, name, sub = parsed
        key = (group, plural, ns, name)
        if verb == "WATCH":
            return "hold", None, {}
        if verb == "LIST":
            api, kind = kinds.get((group, plural), ("v1", "List"))
            items = [copy.deepcopy(o) for (g, p, ons, _), o in sorted(store.items(), key=lambda kv: str(kv[0]))
                     if g == group and p == plural and (ns is None or ons == ns)
                     and selector_matches(query.get("labelSelector"),
                                          (o.get("metadata") or {}).get("labels"))]
            return 200, {"apiVersion": api, "kind": (kind or "") + "List",
                         "metadata": {"resourceVersion": "99"}, "items": items}, {}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return 400, status_body(400, "body is not JSON"), {}
        if verb == "GET":
            if key not in store:
                return 404, status_body(404, '%s "%s" not found' % (plural, name)), {}
            return 200, store[key], {}
        if verb == "POST":
            md = body.setdefault("metadata", {})
            if not md.get("name"):
                counter["name"] += 1
                md["name"] = "%s%05d" % (md.get("generateName", "x-"), counter["name"])
            key = (group, plural, ns, md["name"])
            if key in store:
                return 409, status_body(409, '%s "%s" already exists' % (plural, md["name"]),
                                        "AlreadyExists"), {}
            md.setdefault("uid", "uid-" + md["name"])
            md["resourceVersion"] = next_rv()
            md.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            if ns is not None:
                md["namespace"] = ns
            store[key] = body
            kinds.setdefault((group, plural), (body.get("apiVersion"), body.get("kind")))
            return 201, body, {}
        if key not in store:
            return 404, status_body(404, '%s "%s" not found' % (plural, name)), {}
        cur = store[key]
        if verb == "DELETE":
            md = cur.setdefault("metadata", {})
            if md.get("finalizers"):
                md.setdefault("deletionTimestamp", "2026-01-01T00:00:00Z")
                md["resourceVersion"] = next_rv()
            else:
                del store[key]
            return 200, cur, {}
        if verb == "PUT":
            new = body
        else:
            ctype = self.headers.get("Content-Type", "")
            if "json-patch" in ctype:
                try:
                    new = json_patch(cur, body)
                except PatchFailed as e:
                    return 422, status_body(422, str(e)), {}
            else:
                want = ((body or {}).get("metadata") or {}).get("resourceVersion")
                if want and want != cur["metadata"].get("resourceVersion"):
                    return 409, status_body(409, "the object has been modified"), {}
                new = merge_patch(cur, body)
        new.setdefault("metadata", {})["resourceVersion"] = next_rv()
        md = new["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            del store[key]
        else:
            store[key] = new
        return 200, new, {}

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
for line in sys.stdin:
    with lock:
        load(*line.split())
    print("ok", flush=True)
# The log is written and closed before each answer: nothing is left to flush,
# and waiting for serve_forever()'s poll would cost half a second per case.
with lock:
    os._exit(0)
