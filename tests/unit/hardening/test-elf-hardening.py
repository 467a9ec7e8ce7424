#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the exploit mitigations of every binary the build ships (TAP).

Usage: test-elf-hardening.py BUILD_DIR BINARY...

BINARY are the shipped programs meson knows of; every other ELF executable
found under BUILD_DIR/src is checked too, so a new program cannot slip by.
Per binary, from its ELF file (readelf, binutils):
  - PIE: ET_DYN with DF_1_PIE;
  - full RELRO: a PT_GNU_RELRO segment and BIND_NOW;
  - no executable stack: PT_GNU_STACK without the X flag;
  - CET: an IBT landing pad (endbr64) at main(), and the IBT+SHSTK property
    note whenever the C library's start files carry it (Debian 12's do not,
    and the linker keeps the note only if every input has it);
  - stack protector: __stack_chk_fail is called;
  - fortify: some __*_chk function is called, in builds meant to have
    _FORTIFY_SOURCE (optimized, not under ASan: see meson.build).
From the build's compile_commands.json, for what leaves no mark in the ELF:
every object compiled with -fstack-clash-protection and -fcf-protection=full,
and every object file carrying the IBT+SHSTK property note.
"""

import json
import os
import re
import shlex
import struct
import subprocess
import sys

n = 0
failed = 0


def tap(ok, desc, diag=None):
    global n, failed
    n += 1
    print(f"{'ok' if ok else 'not ok'} {n} - {desc}")
    if not ok:
        failed += 1
        for line in (diag or "").splitlines()[:8]:
            print(f"#   {line}")


def readelf(*args):
    r = subprocess.run(["readelf", "-W", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise RuntimeError(f"readelf {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def is_elf_executable(path):
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def cet_note(text):
    """True when a readelf -n listing has x86 feature IBT and SHSTK."""
    m = re.search(r"x86 feature: ([^\n]*)", text)
    return bool(m) and "IBT" in m.group(1) and "SHSTK" in m.group(1)


def file_offset(path, vaddr):
    """The file offset of a virtual address, through the PT_LOAD headers (ELF64 LE)."""
    with open(path, "rb") as f:
        data = f.read(64)
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type == 1 and p_vaddr <= vaddr < p_vaddr + p_filesz:
                return p_offset + vaddr - p_vaddr
    return None


def check_binary(path, name, fortified, crt_has_cet):
    header = readelf("-h", path)
    dynamic = readelf("-d", path)
    segments = readelf("-l", path)
    notes = readelf("-n", path)
    dynsyms = readelf("--dyn-syms", path)
    symbols = readelf("-s", path)

    flags1 = re.search(r"\(FLAGS_1\)\s+Flags: ([^\n]*)", dynamic)
    flags = re.search(r"\(FLAGS\)\s+([^\n]*)", dynamic)
    elf_type = re.search(r"Type:\s+(\S+)", header)
    pie = bool(flags1) and "PIE" in flags1.group(1).split()
    tap(bool(elf_type) and elf_type.group(1) == "DYN" and pie, f"{name}: PIE (ET_DYN, DF_1_PIE)",
        f"type {elf_type.group(1) if elf_type else '?'}; FLAGS_1: "
        f"{flags1.group(1) if flags1 else 'absent'}")

    bind_now = (flags1 and "NOW" in flags1.group(1).split()) or (
        flags and "BIND_NOW" in flags.group(1).split()) or "(BIND_NOW)" in dynamic
    tap(" GNU_RELRO " in segments and bool(bind_now), f"{name}: full RELRO (GNU_RELRO + BIND_NOW)",
        f"GNU_RELRO segment: {' GNU_RELRO ' in segments}; BIND_NOW: {bool(bind_now)}")

    stack = re.search(r"^\s*GNU_STACK\s+(?:0x[0-9a-f]+\s+){5}([RWE ]+?)\s+0x", segments, re.M)
    tap(bool(stack) and "E" not in stack.group(1), f"{name}: non-executable stack (PT_GNU_STACK)",
        f"GNU_STACK flags: {stack.group(1) if stack else 'no PT_GNU_STACK (executable by default)'}")

    main = re.search(r"^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+FUNC\s+GLOBAL\s+\w+\s+\d+\s+main$",
                     symbols, re.M)
    endbr = False
    if main:
        off = file_offset(path, int(main.group(1), 16))
        if off is not None:
            with open(path, "rb") as f:
                f.seek(off)
                endbr = f.read(4) == b"\xf3\x0f\x1e\xfa"
    tap(endbr, f"{name}: CET: main() starts with an IBT landing pad (endbr64)",
        "main() not found in .symtab" if not main else "first instruction is not endbr64")
    if crt_has_cet:
        tap(cet_note(notes), f"{name}: CET property note (x86 feature IBT, SHSTK)",
            re.search(r"Properties:[^\n]*", notes).group(0) if "Properties:" in notes
            else "no .note.gnu.property")

    tap(re.search(r"\b__stack_chk_fail\b", dynsyms) is not None,
        f"{name}: stack protector (calls __stack_chk_fail)", "no __stack_chk_fail import")

    if fortified:
        chk = sorted(set(re.findall(r"\b(__\w+_chk)\b", dynsyms)) - {"__stack_chk_fail"})
        tap(bool(chk), f"{name}: _FORTIFY_SOURCE (calls __*_chk functions: "
            f"{', '.join(chk[:4]) or 'none'})", "no fortified __*_chk import")


def main():
    if len(sys.argv) < 3:
        print("usage: test-elf-hardening.py BUILD_DIR BINARY...", file=sys.stderr)
        return 2
    builddir = sys.argv[1]
    expected = [os.path.abspath(p) for p in sys.argv[2:]]
    if subprocess.run(["readelf", "--version"], stdout=subprocess.DEVNULL).returncode:
        print("1..1\nnot ok 1 - readelf (binutils) is not installed")
        return 1

    found = []
    for root, dirs, files in os.walk(os.path.join(builddir, "src")):
        dirs[:] = sorted(d for d in dirs if not d.endswith(".p"))
        found += [os.path.abspath(os.path.join(root, f)) for f in sorted(files)
                  if is_elf_executable(os.path.join(root, f))]
    binaries = expected + [p for p in found if p not in expected]

    with open(os.path.join(builddir, "compile_commands.json")) as f:
        commands = json.load(f)
    # Expected from the build's options (the rule in meson.build), not from the
    # flags found, so a build that lost the define fails instead of skipping.
    with open(os.path.join(builddir, "meson-info", "intro-buildoptions.json")) as f:
        options = {o["name"]: o["value"] for o in json.load(f)}
    sanitize = options.get("b_sanitize") or ""
    sanitize = ",".join(sanitize) if isinstance(sanitize, list) else sanitize
    fortify_expected = (str(options.get("optimization")) not in ("0", "plain") and
                        "address" not in sanitize)
    fortified = False
    missing = {"-fstack-clash-protection": [], "-fcf-protection=full": []}
    no_note = []
    for c in commands:
        args = c.get("arguments") or shlex.split(c["command"])
        level = [a for a in args if a.startswith("-D_FORTIFY_SOURCE=")]
        if level and level[-1] != "-D_FORTIFY_SOURCE=0":
            fortified = True
        for flag, where in missing.items():
            if flag not in args:
                where.append(c["file"])
        out = c.get("output") or (args[args.index("-o") + 1] if "-o" in args else None)
        obj = os.path.join(c.get("directory", builddir), out) if out else None
        if obj and os.path.exists(obj) and not cet_note(readelf("-n", obj)):
            no_note.append(os.path.relpath(obj, builddir))

    cc = os.environ.get("CC", "cc")
    scrt1 = subprocess.run([cc, "-print-file-name=Scrt1.o"], stdout=subprocess.PIPE,
                           text=True).stdout.strip()
    crt_has_cet = os.path.isabs(scrt1) and cet_note(readelf("-n", scrt1))

    per_binary = 5 + (1 if crt_has_cet else 0) + (1 if fortify_expected else 0)
    print(f"1..{4 + len(binaries) * per_binary + len(expected)}")
    if fortify_expected:
        tap(fortified, "compiled with _FORTIFY_SOURCE (optimized, no AddressSanitizer)",
            f"optimization={options.get('optimization')} b_sanitize={sanitize or 'none'} "
            "but no -D_FORTIFY_SOURCE in compile_commands.json")
    else:
        # The per-binary __*_chk check is left out here: there is nothing to find.
        tap(not fortified, "compiled without _FORTIFY_SOURCE (ASan or -O0 build, see meson.build)",
            "fortify is on in a build where meson.build leaves it off")
    for flag, where in missing.items():
        tap(not where, f"every object is compiled with {flag} ({len(commands)} compile commands)",
            "\n".join(["missing in:"] + where[:7]))
    tap(not no_note and len(commands) > 0,
        "every object file carries the CET property note (IBT, SHSTK)",
        "\n".join(["without it:"] + no_note[:7]))
    if not crt_has_cet:
        print(f"# {scrt1} has no IBT/SHSTK property, so the linker drops the note from "
              "every executable; main()'s endbr64 is checked instead")
    for p in expected:
        tap(os.path.exists(p), f"{os.path.basename(p)} is built", f"{p} does not exist")
    for p in binaries:
        if os.path.exists(p):
            check_binary(p, os.path.relpath(p, builddir), fortify_expected, crt_has_cet)
        else:
            for _ in range(per_binary):
                tap(False, f"{os.path.relpath(p, builddir)}: not built")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
