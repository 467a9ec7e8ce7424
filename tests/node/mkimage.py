#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes an OCI image layout holding one FROM-scratch image with an entrypoint.

usage: mkimage.py SRC_DIR LAYOUT_DIR TAG ENTRYPOINT_JSON

The real-node suite's images (tests/node): the sandbox image (pause) and the
test image (busybox). Every file under SRC_DIR becomes an entry of one gzip'ed
layer, owned by root, with a fixed mtime so that the digest depends on the
content alone. Unlike `testenv image push`, the config carries an Entrypoint:
containerd refuses a sandbox image without a command.
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


def layer_tar(src):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                info = tar.gettarinfo(path, os.path.relpath(path, src))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return raw.getvalue()


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    src, layout, tag, entrypoint = sys.argv[1:]
    tar = layer_tar(src)
    layer = blob(layout, gzip.compress(tar, compresslevel=6, mtime=0),
                 "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": json.loads(entrypoint), "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }
    cfg = blob(layout, json.dumps(config, sort_keys=True).encode(),
               "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": [layer]}
    man = blob(layout, json.dumps(manifest, sort_keys=True).encode(),
               "application/vnd.oci.image.manifest.v1+json")
    man["annotations"] = {"org.opencontainers.image.ref.name": tag}
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [man]}, f)


if __name__ == "__main__":
    main()
