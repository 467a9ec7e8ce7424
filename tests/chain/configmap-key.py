#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prints one data key of a ConfigMap manifest, as the build pod's volume would
hold it (`/workspace/Dockerfile` is the key `dockerfile`).

usage: configmap-key.py FILE KEY

Reads the subset of YAML our samples use, so that no YAML library is needed:
a single ConfigMap document whose `data:` values are plain one-line scalars or
literal block scalars (`|`, `|-`, `|+`). Anything else is an error that says
what it met, never a silent guess.
"""
import re
import sys


def fail(msg):
    sys.stderr.write(f"configmap-key.py: {msg}\n")
    sys.exit(1)


def block(lines, i, parent_indent, chomp):
    """Collects the literal block starting after line i; returns (text, next index)."""
    body = []
    indent = None
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if line.strip() == "":
            body.append("")
            j += 1
            continue
        cur = len(line) - len(line.lstrip(" "))
        if cur <= parent_indent:
            break
        if indent is None:
            indent = cur
        if cur < indent:
            fail(f"line {j + 1}: less indented than the block it belongs to")
        body.append(line[indent:])
        j += 1
    text = "\n".join(body)
    if chomp == "-":
        text = text.rstrip("\n")
    elif chomp == "+":
        text += "\n"
    else:
        text = text.rstrip("\n") + "\n"
    return text, j


def main(argv):
    if len(argv) != 3:
        fail("usage: configmap-key.py FILE KEY")
    path, want = argv[1], argv[2]
    lines = open(path, encoding="utf-8").read().split("\n")
    if not any(re.match(r"^kind:\s*ConfigMap\s*$", l) for l in lines):
        fail(f"{path}: not a ConfigMap")
    if sum(1 for l in lines if l.strip() == "---") > 1:
        fail(f"{path}: more than one document")
    in_data = False
    data_indent = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^data:\s*$", line):
            in_data = True
            i += 1
            continue
        if in_data and line.strip() and not line.startswith(" "):
            break
        m = re.match(r"^( +)([A-Za-z0-9._-]+):\s*(.*)$", line) if in_data else None
        if m:
            indent = len(m.group(1))
            if data_indent is None:
                data_indent = indent
            if indent == data_indent:
                key, rest = m.group(2), m.group(3).strip()
                bm = re.match(r"^\|([+-]?)$", rest)
                if bm:
                    text, i = block(lines, i, indent, bm.group(1))
                elif rest and rest[0] not in "|>&*!{[":
                    text = rest.strip("'\"") + ""
                    i += 1
                else:
                    fail(f"line {i + 1}: unsupported value for {key}: {rest!r}")
                if key == want:
                    sys.stdout.write(text)
                    return 0
                continue
        i += 1
    fail(f"{path}: no data key {want!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
