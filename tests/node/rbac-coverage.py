#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Which request of kmm's ServiceAccounts used each rule of kmm's install.

    rbac-coverage.py NAMESPACE RBAC.json AUDIT.log...

RBAC.json: `kubectl get clusterroles,clusterrolebindings,roles,rolebindings
-A -o json` of a cluster where deploy/ is installed. AUDIT.log: the
apiserver audit logs (JSON lines) that testenv writes with
KMM_TESTENV_AUDIT_LOG (docs/testenv.md, "Audit log") while the node suites
ran kmm under its ServiceAccounts.

Every rule granted to a ServiceAccount of NAMESPACE, by a binding of the
install, is split into one rule per verb x apiGroup x resource[/subresource]
(with its resourceNames and, for a RoleBinding, its namespace). A rule is
used when the audit log holds a request of that ServiceAccount that RBAC
allowed and that the rule matches. `update <kind>/finalizers` is never a
request: OwnerReferencesPermissionEnforcement (on with the audit log) checks
it when a write sets an owner reference with blockOwnerDeletion, so a
successful write of that ServiceAccount carrying such a reference to a
<kind> uses it.

Prints one line per rule, tab-separated: ok|fail|todo, the rule, what used it
(or what should have: EXPECTED below).
"""

import json
import sys

# Rules that only a case of another suite exercises: named when the audit log
# has no request for them, so that a failure says where to look.
EXPECTED = {
    ("kmm-operator-controller", "modulebuildsignconfigs"): "kmm.t's g-build-failed (created, patched for new build args, deleted for a rebuild)",
    ("kmm-operator-controller", "modulebuildsignconfigs/status"): "kmm.t's g-build-failed (the failed build pod's result)",
    ("kmm-operator-controller", "modulebuildsignconfigs/finalizers"): "kmm.t's g-build-failed (its build pod owned by the MBSC)",
    ("kmm-operator-controller", "moduleimagesconfigs/finalizers"): "kmm.t's g-build-failed (an MBSC owned by its MIC)",
    ("kmm-operator-controller", "secrets"): "kmm.t's g-preflight-on-node (imageRepoSecret) or tests/node/buildsign.t (sign.keySecret and certSecret)",
}

# Rules whose only use is a race no case can order: reported as TODO (tests/run
# counts them as skipped, with this reason), never as used.
RACE_ONLY = {
    ("kmm-operator-controller", "get", "nodemodulesconfigs"):
        "kmm reads a node's NMC only when its create lost to another writer (409), a race "
        "no case on the node can order; the path is tests/data/operator/"
        "module-nmc-create-exists.yaml (unit, stub apiserver)",
}


def load_rules(ns, doc):
    """(sa, scope namespace or None, binding, role, rule dict) for each rule bound to an SA of ns."""
    roles = {}
    bindings = []
    for o in doc.get("items", []):
        kind = o.get("kind")
        meta = o.get("metadata", {})
        if kind in ("ClusterRole", "Role"):
            roles[(kind, meta.get("namespace"), meta["name"])] = o.get("rules") or []
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            bindings.append(o)
    out = []
    for b in bindings:
        meta = b["metadata"]
        scope = meta.get("namespace")
        ref = b["roleRef"]
        key = (ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])
        for s in b.get("subjects") or []:
            if s.get("kind") != "ServiceAccount" or s.get("namespace") != ns:
                continue
            for r in roles.get(key, []):
                out.append((s["name"], scope, f'{b["kind"]} {meta["name"]}', f'{ref["kind"]} {ref["name"]}', r))
    return out


def expand(rules):
    """One (sa, scope, verb, group, resource, names, where) per verb x group x resource."""
    seen = set()
    for sa, scope, binding, role, r in rules:
        names = tuple(sorted(r.get("resourceNames") or []))
        if r.get("nonResourceURLs"):
            for v in r["verbs"]:
                for u in r["nonResourceURLs"]:
                    item = (sa, scope, v, None, u, names, role)
                    if item[:6] not in seen:
                        seen.add(item[:6])
                        yield item
            continue
        for v in r.get("verbs", []):
            for g in r.get("apiGroups", []):
                for res in r.get("resources", []):
                    item = (sa, scope, v, g, res, names, role)
                    if item[:6] not in seen:
                        seen.add(item[:6])
                        yield item


def read_audit(paths):
    events = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    return events


def allowed(e):
    return (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "allow"


def resource_of(o):
    r = o.get("resource", "")
    return r + "/" + o["subresource"] if o.get("subresource") else r


def matches(item, e, user):
    sa, scope, verb, group, res, names, _ = item
    if e.get("user", {}).get("username") != user or not allowed(e):
        return False
    if verb != "*" and e.get("verb") != verb:
        return False
    o = e.get("objectRef")
    if group is None:  # nonResourceURL
        return o is None and e.get("requestURI", "").split("?")[0] == res
    if o is None or o.get("apiGroup", "") != group and group != "*":
        return False
    if res != "*" and resource_of(o) != res:
        return False
    if scope is not None and o.get("namespace") != scope:
        return False
    return not names or o.get("name") in names


def owner_refs(e):
    body = e.get("requestObject")
    if not isinstance(body, dict):
        return []
    return [r for r in (body.get("metadata") or {}).get("ownerReferences") or [] if r.get("blockOwnerDeletion")]


def finalizer_uses(item, e, user):
    """A successful write by the SA with a blockOwnerDeletion reference to the rule's kind."""
    sa, scope, verb, group, res, names, _ = item
    if verb not in ("update", "*") or group is None or not res.endswith("/finalizers"):
        return False
    if e.get("user", {}).get("username") != user or e.get("verb") not in ("create", "update", "patch"):
        return False
    if (e.get("responseStatus") or {}).get("code", 0) >= 300:
        return False
    kind_plural = res[: -len("/finalizers")]
    for r in owner_refs(e):
        g = r.get("apiVersion", "").rpartition("/")[0]
        if g == group and r.get("kind", "").lower() + "s" == kind_plural and (not names or r.get("name") in names):
            return True
    return False


def describe(e):
    o = e.get("objectRef") or {}
    what = resource_of(o) or e.get("requestURI", "")
    where = "/".join(x for x in (o.get("namespace"), o.get("name")) if x)
    code = (e.get("responseStatus") or {}).get("code", "?")
    return f'{e.get("verb")} {what}{" " + where if where else ""} -> {code} at {e.get("requestReceivedTimestamp", "?")}'


def rule_name(item):
    sa, scope, verb, group, res, names, role = item
    g = "core" if group == "" else group
    s = f"{sa}: {verb} {res}" if group is None else f"{sa}: {verb} {g}/{res}"
    if names:
        s += " [" + ",".join(names) + "]"
    if scope:
        s += f" in {scope}"
    return s + f" ({role})"


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    ns = argv[1]
    with open(argv[2], encoding="utf-8") as f:
        doc = json.load(f)
    events = read_audit(argv[3:])
    items = list(expand(load_rules(ns, doc)))
    if not items:
        print(f"no rule bound to a ServiceAccount of {ns}", file=sys.stderr)
        return 1
    for item in items:
        user = f"system:serviceaccount:{ns}:{item[0]}"
        uses = [e for e in events if matches(item, e, user) or finalizer_uses(item, e, user)]
        if uses:
            note = f"{len(uses)} requests, first {describe(uses[0])}"
            if finalizer_uses(item, uses[0], user):
                note += " (blockOwnerDeletion owner reference)"
            print(f"ok\t{rule_name(item)}\t{note}")
        elif (item[0], item[2], item[4]) in RACE_ONLY:
            print(f"todo\t{rule_name(item)}\tno request used it: "
                  f"{RACE_ONLY[(item[0], item[2], item[4])]}")
        else:
            exp = EXPECTED.get((item[0], item[4]))
            print(f"fail\t{rule_name(item)}\tno request used it" + (f"; expected from {exp}" if exp else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
