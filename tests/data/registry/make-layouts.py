#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Builds the OCI image layouts the registry tests push and extract.

    make-layouts.py OUT            writes OUT/good, OUT/hostile (OCI layouts),
                                   OUT/good-v1.expected, OUT/good-multi-arm64.expected
                                   (tree listings, see registry.t) and
                                   OUT/hostile.expected (tag<TAB>error fragment)
    make-layouts.py --fuzz-corpus DIR   writes each layer blob as a fuzz seed
    make-layouts.py --manifest-corpus DIR   writes manifests and indexes as seeds

Layers are crafted with python3's tarfile (no committed binaries); zstd
layers need the zstd command. Output is deterministic (fixed mtimes, gzip
without names or times).
"""
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

K = "opt/lib/modules/6.1.0-kmm"
PREFIXES = ["/" + K, "/firmware"]
MTIME = 1577836800


def entry(name, kind="f", data=b"", mode=None, target=None, major=0, minor=0, size=None):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if kind == "f":
        ti.type = tarfile.REGTYPE
        ti.mode = 0o644 if mode is None else mode
        ti.size = len(data) if size is None else size
    elif kind == "d":
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755 if mode is None else mode
    elif kind == "l":
        ti.type = tarfile.SYMTYPE
        ti.mode = 0o777
        ti.linkname = target
    elif kind == "h":
        ti.type = tarfile.LNKTYPE
        ti.mode = 0o644
        ti.linkname = target
    elif kind in "cb":
        ti.type = tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE
        ti.mode = 0o600
        ti.devmajor, ti.devminor = major, minor
    elif kind == "p":
        ti.type = tarfile.FIFOTYPE
        ti.mode = 0o600
    return ti, data


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            if ti.type == tarfile.REGTYPE and ti.size and len(data) != ti.size:
                data = b"\0" * ti.size
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def compress(raw, how):
    if how == "gzip":
        return gzip.compress(raw, compresslevel=9, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        out = subprocess.run(["zstd", "-q", "-19", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
        return out, "application/vnd.oci.image.layer.v1.tar+zstd"
    return raw, "application/vnd.oci.image.layer.v1.tar"


class Layout:
    def __init__(self, path):
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(os.path.join(path, "blobs", "sha256"))
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.index = []

    def blob(self, data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    def manifest(self, layers, arch="amd64"):
        cfg = json.dumps({"architecture": arch, "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": [
                              "sha256:" + hashlib.sha256(raw).hexdigest() for raw, _, _ in layers]}},
                         separators=(",", ":")).encode()
        cd, cs = self.blob(cfg)
        descs = []
        for raw, blob, mt in layers:
            d, s = self.blob(blob)
            descs.append({"mediaType": mt, "digest": d, "size": s})
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                        "layers": descs}, separators=(",", ":")).encode()
        d, s = self.blob(m)
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": s}, m

    def image_index(self, entries):
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": entries}, separators=(",", ":")).encode()
        d, s = self.blob(idx)
        return {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s}, idx

    def tag(self, desc, name):
        e = dict(desc)
        e["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.index.append(e)

    def close(self):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f, separators=(",", ":"))


def layer(entries, how="gzip"):
    raw = tar_bytes(entries)
    blob, mt = compress(raw, how)
    return raw, blob, mt


def good_layers():
    l1 = layer([
        entry("./", "d"),
        entry("./etc/", "d"),
        entry("./etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
        entry("./opt/", "d"), entry("./opt/lib/", "d"), entry("./opt/lib/modules/", "d"),
        entry("./" + K + "/", "d"),
        entry("./" + K + "/extra/", "d"),
        entry("./" + K + "/extra/a.ko", data=b"module a\n"),
        entry("./" + K + "/extra/b.ko", data=b"module b\n"),
        entry("./" + K + "/sub/", "d"),
        entry("./" + K + "/sub/c.ko", data=b"c\n"),
        entry("./" + K + "/build", "l", target="/usr/src/linux-headers-6.1.0-kmm"),
        entry("./firmware/", "d"),
        entry("./firmware/old.bin", data=b"old fw\n"),
        entry("./opt/lib/modules/5.14.0-other/x.ko", data=b"other kernel\n"),
    ], "gzip")
    l2 = layer([
        entry(K + "/extra/.wh.b.ko"),
        entry(K + "/sub/.wh..wh..opq"),
        entry(K + "/sub/d.ko", data=b"d\n"),
        entry(K + "/modules.dep", data=b"extra/a.ko:\n"),
        entry(K + "/extra/alias.ko", "l", target="a.ko"),
        entry(K + "/extra/hard.ko", "h", target=K + "/extra/a.ko"),
    ], "zstd")
    l3 = layer([
        entry("firmware/.wh.old.bin"),
        entry("firmware/new.bin", data=b"new fw\n"),
    ], "tar")
    return [l1, l2, l3]


GOOD_V1 = """d firmware 755
d opt 755
d opt/lib 755
d opt/lib/modules 755
d {K} 755
d {K}/extra 755
d {K}/sub 755
f firmware/new.bin 644 7
f {K}/extra/a.ko 644 9
f {K}/extra/hard.ko 644 9
f {K}/modules.dep 644 12
f {K}/sub/d.ko 644 2
l {K}/build -> ../../../../usr/src/linux-headers-6.1.0-kmm
l {K}/extra/alias.ko -> a.ko
""".format(K=K)

GOOD_ARM64 = """d opt 755
d opt/lib 755
d opt/lib/modules 755
d {K} 755
d {K}/extra 755
f {K}/extra/arm64.ko 644 13
""".format(K=K)


def hostile_layers():
    big = 2 * 1024 * 1024
    return {
        "dotdot": ([entry(K + "/ok.ko", data=b"ok\n"), entry("../etc/passwd", data=b"pwned\n")],
                   "entry '../etc/passwd': path escapes the target"),
        "absolute": ([entry("/etc/passwd", data=b"pwned\n")], "entry '/etc/passwd': absolute path"),
        "symlink-escape": ([entry(K + "/evil", "l", target="../../../../../../etc")],
                           "entry '" + K + "/evil': symlink target escapes the target"),
        "hardlink-escape": ([entry(K + "/shadow.ko", "h", target="../../../../../etc/shadow")],
                            "entry '" + K + "/shadow.ko': hard link target escapes the target"),
        "device": ([entry(K + "/null", "c", major=1, minor=3)],
                   "entry '" + K + "/null': device nodes are not allowed"),
        "fifo": ([entry(K + "/fifo", "p")], "entry '" + K + "/fifo': FIFOs are not allowed"),
        "whiteout": ([entry(K + "/.wh..")], "malformed whiteout"),
        "through-symlink": ([entry(K + "/l", "l", target="."), entry(K + "/l/x.ko", data=b"x\n")],
                            "parent directory is a symlink"),
        "big": ([entry(K + "/big.ko", size=big)], "file larger than the per-file limit"),
    }


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--fuzz-corpus":
        os.makedirs(args[1], exist_ok=True)
        # Plain tars mutate into more interesting headers than compressed ones;
        # keep them short (no 10 KiB record padding).
        tarfile.RECORDSIZE = 1024
        good = good_layers()
        seeds = {"good-gzip": good[0][1], "good-tar": good[0][0], "good-tar-whiteouts": good[2][1]}
        for name, (ents, _) in hostile_layers().items():
            if name != "big":
                seeds["hostile-" + name] = layer(ents)[1]
                seeds["hostile-" + name + "-tar"] = layer(ents, "tar")[1]
        for name, data in seeds.items():
            with open(os.path.join(args[1], name), "wb") as f:
                f.write(data)
        return 0
    if len(args) == 2 and args[0] == "--manifest-corpus":
        tmp = args[1] + ".layout"
        lay = Layout(tmp)
        desc, m = lay.manifest(good_layers())
        arm, _ = lay.manifest([layer([entry(K + "/extra/arm64.ko", data=b"arm64 module\n")])], "arm64")
        a = dict(desc, platform={"os": "linux", "architecture": "amd64"})
        b = dict(arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"})
        _, idx = lay.image_index([a, b])
        shutil.rmtree(tmp)
        os.makedirs(args[1], exist_ok=True)
        # The fuzz target reads the first byte as a Content-Type selector.
        seeds = {
            "oci-manifest": b"\x00" + m,
            "oci-index": b"\x01" + idx,
            "docker-v2-by-content-type": b"\x02" + m.replace(b'"mediaType":"application/vnd.oci.image.manifest.v1+json",', b"", 1),
            "dockerconfig": b"\x00" + json.dumps({"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"kmm:pw").decode()},
                                                            "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}).encode(),
            "challenge-bearer": b'\x00Bearer realm="https://auth.example.com/token",service="reg",scope="repository:a/b:pull"',
            "image-ref": b"\x00quay.io:443/acme/kmod:6.1.0-18-amd64@sha256:" + b"ab" * 32,
        }
        for name, data in seeds.items():
            with open(os.path.join(args[1], name), "wb") as f:
                f.write(data)
        return 0
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = args[0]
    os.makedirs(out, exist_ok=True)

    good = Layout(os.path.join(out, "good"))
    v1, _ = good.manifest(good_layers())
    good.tag(v1, "v1")
    arm, _ = good.manifest([layer([entry(K + "/extra/arm64.ko", data=b"arm64 module\n")])], "arm64")
    multi, _ = good.image_index([dict(v1, platform={"os": "linux", "architecture": "amd64"}),
                                 dict(arm, platform={"os": "linux", "architecture": "arm64"})])
    good.tag(multi, "multi")
    good.close()
    with open(os.path.join(out, "good-v1.expected"), "w") as f:
        f.write(GOOD_V1)
    with open(os.path.join(out, "good-multi-arm64.expected"), "w") as f:
        f.write(GOOD_ARM64)

    hostile = Layout(os.path.join(out, "hostile"))
    with open(os.path.join(out, "hostile.expected"), "w") as f:
        for name, (ents, fragment) in hostile_layers().items():
            desc, _ = hostile.manifest([layer(ents)])
            hostile.tag(desc, name)
            f.write("%s\t%s\n" % (name, fragment))
    hostile.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
