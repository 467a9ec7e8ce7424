#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes an OCI image layout holding one FROM-scratch kmod image.

usage: mkoci.py SRC_DIR LAYOUT_DIR NAME [--pad-mib N]

Every file under SRC_DIR becomes an entry of a single gzip'ed layer (paths
relative to SRC_DIR, as an image built FROM scratch would carry them). The
manifest is tagged NAME through the org.opencontainers.image.ref.name
annotation of index.json. --pad-mib adds N MiB of incompressible data under
pad/ (outside what the worker extracts), for benchmarks.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def blob(layout, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, digest), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def main():
    args = sys.argv[1:]
    pad = 0
    if "--pad-mib" in args:
        i = args.index("--pad-mib")
        pad = int(args[i + 1])
        del args[i:i + 2]
    src, layout, name = args
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for entry in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, entry)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, src))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        if pad:
            info = tarfile.TarInfo("pad/random.bin")
            info.size = pad * 1024 * 1024
            tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    tar_bytes = raw.getvalue()
    layer = blob(layout, gzip.compress(tar_bytes, compresslevel=1),
                 "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
        "config": {},
    }
    cfg = blob(layout, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg,
        "layers": [layer],
    }
    man = blob(layout, json.dumps(manifest).encode(),
               "application/vnd.oci.image.manifest.v1+json")
    man["annotations"] = {"org.opencontainers.image.ref.name": name}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [man]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


if __name__ == "__main__":
    main()
