#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Lists the files of an image in an OCI image layout, layer by layer.

usage: imagefiles.py LAYOUT NAME

One line per regular file: `LAYER PATH SIZE SHA256 SIGNED`, LAYER counting
from 0 (the base), SIGNED `signed` when the file ends with the kernel's
module signature marker and `-` otherwise. Then `config ENTRYPOINT` with the
image's entrypoint as JSON. NAME is the org.opencontainers.image.ref.name of
the manifest in index.json (skopeo copy ... oci:LAYOUT:NAME).
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MARKER = b"~Module signature appended~\n"


def blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as f:
        data = f.read()
    if hashlib.new(algo, data).hexdigest() != hexd:
        raise SystemExit(f"blob {digest} does not match its digest")
    return data


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    layout, name = argv[1], argv[2]
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    found = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name]
    if len(found) != 1:
        raise SystemExit(f"{layout}: {len(found)} manifests named {name}")
    manifest = json.loads(blob(layout, found[0]["digest"]))
    for i, layer in enumerate(manifest["layers"]):
        data = blob(layout, layer["digest"])
        if layer["mediaType"].endswith("+gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                content = tar.extractfile(member).read()
                signed = "signed" if content.endswith(MARKER) else "-"
                print(i, member.name.lstrip("./"), len(content),
                      hashlib.sha256(content).hexdigest(), signed)
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    print("config", json.dumps(config.get("config", {}).get("Entrypoint")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
