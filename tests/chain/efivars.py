#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Puts an X.509 certificate into an EFI variable of an OVMF variable store.

usage: efivars.py VARS.fd NAME CERT.der [--guid GUID] [--attr HEX]
       efivars.py --list VARS.fd

The certificate becomes a one-entry EFI_SIGNATURE_LIST (type EFI_CERT_X509),
appended as a new variable NAME (default vendor GUID: shim's, for MokListRT;
default attributes 7 = non-volatile, boot service and runtime access) after
the last variable of the store. The store must be an edk2 authenticated
variable store (OVMF_VARS*.fd) that does not hold NAME yet: start from a fresh
copy of the template for every run. --list prints the live variables.

Used by tests/chain/chain.t and tests/chain/step to make the Secure Boot
guest trust the test signing certificate as a Machine Owner Key without shim:
Debian's kernel reads MokListRT at boot when Secure Boot is on and puts its
certificates on the .machine keyring (docs/cookbook/sign.md).
"""
import struct
import sys
import uuid

SHIM_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
EFI_CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
AUTH_VARSTORE = uuid.UUID("aaf32c78-947b-439a-a180-2e144ec37792")
START_ID = 0x55AA
VAR_ADDED = 0x3F
VAR_IN_DELETED_TRANSITION = 0xFE
# StartId, State, Reserved, Attributes, MonotonicCount, TimeStamp,
# PubKeyIndex, NameSize, DataSize, VendorGuid
VAR_HEADER = struct.Struct("<HBBIQ16sIII16s")


def signature_list(der, owner):
    entry = owner.bytes_le + der
    return EFI_CERT_X509.bytes_le + struct.pack("<III", 28 + len(entry), 0, len(entry)) + entry


def store_bounds(d):
    if d[0x28:0x2C] != b"_FVH":
        raise SystemExit("not a firmware volume (no _FVH signature)")
    start = struct.unpack_from("<H", d, 0x30)[0]
    if uuid.UUID(bytes_le=bytes(d[start:start + 16])) != AUTH_VARSTORE:
        raise SystemExit("not an authenticated variable store")
    size = struct.unpack_from("<I", d, start + 16)[0]
    return start + 28, start + size


def variables(d):
    """Yields (offset, end, live, name, guid, attributes, data) of each record."""
    off, end = store_bounds(d)
    while off + VAR_HEADER.size <= end:
        h = VAR_HEADER.unpack_from(d, off)
        if h[0] != START_ID:
            return
        state, attr, nsize, dsize = h[1], h[3], h[7], h[8]
        body = off + VAR_HEADER.size
        if body + nsize + dsize > end:
            raise SystemExit(f"variable at 0x{off:x} runs past the store")
        name = bytes(d[body:body + nsize]).decode("utf-16le").rstrip("\0")
        data = bytes(d[body + nsize:body + nsize + dsize])
        live = state in (VAR_ADDED, VAR_ADDED & VAR_IN_DELETED_TRANSITION)
        nxt = (body + nsize + dsize + 3) & ~3
        yield off, nxt, live, name, uuid.UUID(bytes_le=bytes(h[9])), attr, data
        off = nxt


def append(d, name, guid, attr, data):
    free, end = store_bounds(d)
    for _, nxt, live, vname, vguid, _, _ in variables(d):
        if live and vname == name and vguid == guid:
            raise SystemExit(f"the store already holds {name}; start from a fresh template")
        free = nxt
    encoded = (name + "\0").encode("utf-16le")
    rec = VAR_HEADER.pack(START_ID, VAR_ADDED, 0, attr, 0, bytes(16), 0, len(encoded), len(data),
                          guid.bytes_le) + encoded + data
    if free + len(rec) > end or any(b != 0xFF for b in d[free:free + len(rec)]):
        raise SystemExit("no free space left in the variable store")
    d[free:free + len(rec)] = rec


def main(argv):
    if len(argv) == 3 and argv[1] == "--list":
        d = bytearray(open(argv[2], "rb").read())
        for _, _, live, name, guid, attr, data in variables(d):
            if live:
                print(f"{name} {guid} attr={attr:#x} {len(data)} bytes")
        return 0
    args = argv[1:]
    opts = {"--guid": SHIM_GUID, "--attr": "7"}
    for o in list(opts):
        if o in args:
            i = args.index(o)
            opts[o] = args[i + 1]
            del args[i:i + 2]
    if len(args) != 3:
        sys.stderr.write(__doc__)
        return 2
    path, name, cert = args
    guid = uuid.UUID(opts["--guid"])
    der = open(cert, "rb").read()
    if der[:1] != b"\x30":
        raise SystemExit(f"{cert}: not a DER certificate")
    d = bytearray(open(path, "rb").read())
    append(d, name, guid, int(opts["--attr"], 16), signature_list(der, uuid.UUID(SHIM_GUID)))
    with open(path, "wb") as f:
        f.write(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
