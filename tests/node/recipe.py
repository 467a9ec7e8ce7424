#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Extracts the runnable blocks of a cookbook page (docs/cookbook/*.md).

A page marks each fenced block a test runs with an HTML comment on the line
before it (blank lines between them are allowed; Markdown renders neither):

    <!-- recipe: PAGE/STEP -->
    ```yaml
    ...
    ```

NAME (PAGE/STEP by convention, e.g. prebuilt/module) is unique in its page
and made of [A-Za-z0-9._/-]. The fence is ``` or ~~~ (three or more), with an
optional info string (yaml, sh, ...); the block ends at the first closing
fence of the same character and at least the same length.

Pages write what a user changes as plain example values (a registry host, a
node name, a kernel release) and say so in the text; a test replaces them
with exact-string substitutions, applied in the order given, as a user
edits them. Nothing else of the block changes.

Usage (the interface is stable; tests/node/cookbook.t and others use it):

    recipe.py list PAGE.md
        one line per marked block: NAME<TAB>INFO<TAB>LINE (LINE: the 1-based
        line of its opening fence; INFO: the info string, may be empty)
    recipe.py get PAGE.md NAME [-s OLD=NEW]...
        the block's text (every line, with its newline), substitutions applied
    recipe.py write PAGE.md DIR [-s OLD=NEW]...
        each block into DIR/NAME (subdirectories made), substitutions applied;
        prints the paths written

Exit status: 0; 1 for a missing page or NAME, an unterminated block, a
marker not followed by a fenced block, or a NAME marked twice; 2 for usage
errors. An OLD that occurs in no block `get` or `write` reads is an error
too (exit 1): a page that renamed its example value must not pass silently.
"""

import argparse
import os
import re
import sys

MARKER = re.compile(r"^\s*<!--\s*recipe:\s*([A-Za-z0-9._/-]+)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")


class RecipeError(Exception):
    pass


def blocks(path):
    """[(name, info, line, text)] of the marked blocks of the page at path."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as e:
        raise RecipeError(f"{path}: {e.strerror}")
    out, seen, i = [], {}, 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if not m:
            i += 1
            continue
        name, at = m.group(1), i + 1
        if name in seen:
            raise RecipeError(f"{path}:{at}: recipe {name} already marked at line {seen[name]}")
        seen[name] = at
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        f = FENCE.match(lines[i]) if i < len(lines) else None
        if not f:
            raise RecipeError(f"{path}:{at}: recipe {name} is not followed by a fenced block")
        indent, fence, info, start = f.group(1), f.group(2), f.group(3), i + 1
        body, i = [], i + 1
        close = re.compile(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        while i < len(lines) and not close.match(lines[i]):
            # Lines of an indented block (in a list item) lose the fence's indentation.
            ln = lines[i]
            body.append(ln[len(indent):] if indent and ln.startswith(indent) else ln)
            i += 1
        if i >= len(lines):
            raise RecipeError(f"{path}:{start}: the block of recipe {name} is not closed")
        i += 1
        text = "".join(body)
        if text and not text.endswith("\n"):
            text += "\n"
        out.append((name, info, start, text))
    return out


def substitutions(pairs):
    subs = []
    for p in pairs or []:
        if "=" not in p or p.startswith("="):
            raise SystemExit(f"recipe.py: -s wants OLD=NEW, got {p!r}")
        subs.append(tuple(p.split("=", 1)))
    return subs


def apply(texts, subs, path):
    used = set()
    out = []
    for t in texts:
        for old, new in subs:
            if old in t:
                used.add(old)
                t = t.replace(old, new)
        out.append(t)
    unused = [old for old, _ in subs if old not in used]
    if unused:
        raise RecipeError(f"{path}: no block read contains {', '.join(map(repr, unused))}")
    return out


def main(argv):
    ap = argparse.ArgumentParser(prog="recipe.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("list")
    p.add_argument("page")
    p = sub.add_parser("get")
    p.add_argument("page")
    p.add_argument("name")
    p.add_argument("-s", action="append", metavar="OLD=NEW")
    p = sub.add_parser("write")
    p.add_argument("page")
    p.add_argument("dir")
    p.add_argument("-s", action="append", metavar="OLD=NEW")
    a = ap.parse_args(argv)
    try:
        found = blocks(a.page)
        if a.verb == "list":
            for name, info, line, _ in found:
                print(f"{name}\t{info}\t{line}")
        elif a.verb == "get":
            texts = [t for name, _, _, t in found if name == a.name]
            if not texts:
                raise RecipeError(f"{a.page}: no recipe {a.name}")
            sys.stdout.write(apply(texts, substitutions(a.s), a.page)[0])
        else:
            texts = apply([t for _, _, _, t in found], substitutions(a.s), a.page)
            for (name, _, _, _), t in zip(found, texts):
                dest = os.path.join(a.dir, name)
                os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(t)
                print(dest)
    except RecipeError as e:
        print(f"recipe.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
