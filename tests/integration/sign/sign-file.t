#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""kmm-sign against the kernel's scripts/sign-file, the oracle.

Every case signs the same inputs with both tools and compares bytes (RSA
signatures are deterministic), or, for ECDSA whose signatures are randomised,
checks each tool's output with the other's verifier, openssl cms and modinfo.
`kmm-sign info` is compared with kmod's modinfo on ELF modules.

Needs: sign-file (linux-kbuild-6.1), openssl, kmod's modinfo, xz, zstd, gzip,
gcc. A missing sign-file is a failure, not a skip. The real-module case builds
a tiny module against /lib/modules/$(uname -r or any)/build and is skipped when
no kernel headers are installed.

Env: KMM_BUILD_DIR (default build/dev), KMM_SOURCE_DIR (default the checkout).
"""

import glob
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("KMM_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
BUILD = os.environ.get("KMM_BUILD_DIR") or os.path.join(SRC, "build", "dev")
KMM_SIGN = os.path.join(BUILD, "src", "sign", "kmm-sign")
SIGN_FILE = os.environ.get("KMM_SIGN_FILE", "/usr/lib/linux-kbuild-6.1/scripts/sign-file")
MAGIC = b"~Module signature appended~\n"

X509_GENKEY = """[ req ]
default_bits = {bits}
distinguished_name = req_distinguished_name
prompt = no
string_mask = utf8only
x509_extensions = myexts

[ req_distinguished_name ]
CN = {cn}

[ myexts ]
basicConstraints=critical,CA:FALSE
keyUsage=digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""

ELF_SOURCE = """
__attribute__((section(".modinfo"), used, aligned(1))) static const char l[] = "license=GPL";
__attribute__((section(".modinfo"), used, aligned(1))) static const char d[] = "description={desc}";
static char pad[{pad}] = {{ 1 }};
int init_module(void) {{ return pad[0]; }}
"""

SIG_FIELDS = ("sig_id", "signer", "sig_key", "sig_hashalgo", "signature")

n_case = 0
failed = 0


def out(msg):
    print(msg, flush=True)


def case(name, ok, diag=None):
    global n_case, failed
    n_case += 1
    if ok:
        out(f"ok {n_case} - {name}")
    else:
        failed += 1
        out(f"not ok {n_case} - {name}")
        for line in (diag or "").splitlines()[:30]:
            out(f"# {line}")


def distro_modules_dir():
    """Debian-signed modules to compare against: the installed kernel's, or else the
    network drivers of the kernel package matching the installed headers, taken from
    its .deb (downloaded, not installed) once and cached."""
    if glob.glob("/lib/modules/*/kernel/**/*.ko", recursive=True):
        return "/lib/modules/*/kernel"
    headers = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
    if not headers:
        sys.exit("Bail out! no linux-headers-*-amd64 to pick the kernel package from")
    kver = os.path.basename(headers[-1])[len("linux-headers-"):]
    cache = os.path.join(os.path.expanduser(os.environ.get("KMM_CACHE_DIR", "~/.cache/kmm")),
                         "sign", "distro-" + kver)
    if not glob.glob(os.path.join(cache, "**", "*.ko"), recursive=True):
        work = tempfile.mkdtemp(prefix="kmm-sign-deb.")
        try:
            subprocess.run(["apt-get", "download", "linux-image-" + kver], cwd=work, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deb = glob.glob(os.path.join(work, "*.deb"))[0]
            os.makedirs(cache + ".tmp", exist_ok=True)
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", cache + ".tmp", "--wildcards",
                            f"./lib/modules/{kver}/kernel/drivers/net/*.ko"],
                           stdin=tar.stdout, check=True)
            tar.wait()
            os.rename(cache + ".tmp", cache)
        except (subprocess.CalledProcessError, IndexError, OSError) as e:
            sys.exit(f"Bail out! cannot get Debian-signed modules from linux-image-{kver}: {e}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(cache + ".tmp", ignore_errors=True)
    return cache


def missing(name, reason):
    """A case whose dependency is absent fails, naming what is missing."""
    case(name, False, f"missing: {reason}")


def run(*args, check=True, **kw):
    p = subprocess.run([str(a) for a in args], capture_output=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: exit {p.returncode}: "
                           f"{p.stderr.decode(errors='replace')[-2000:]}")
    return p


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


class Failure(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Failure(msg)


def group(name):
    """Runs a test group as one TAP case; an exception is a failure with its message."""
    def wrap(fn):
        def runner(*a):
            try:
                fn(*a)
                case(name, True)
            except (Failure, RuntimeError, OSError, subprocess.SubprocessError) as e:
                case(name, False, str(e))
        return runner
    return wrap


class Keys:
    """Keys and certificates made with the openssl CLI, as kbuild makes them."""

    def __init__(self, d):
        self.d = d

    def path(self, name):
        return os.path.join(self.d, name)

    def kbuild_rsa(self, name, bits, cn):
        cfg = self.path(name + ".genkey")
        with open(cfg, "w") as f:
            f.write(X509_GENKEY.format(bits=bits, cn=cn))
        run("openssl", "req", "-new", "-nodes", "-utf8", "-sha256", "-days", "36500", "-batch",
            "-x509", "-config", cfg, "-outform", "PEM", "-out", self.path(name + ".crt"),
            "-keyout", self.path(name + ".pem"))
        self.der_variants(name)

    def plain_cert(self, name, keyargs, cn, serial):
        """A certificate without any extension (so no subjectKeyIdentifier)."""
        run("openssl", "req", "-new", "-nodes", *keyargs, "-keyout", self.path(name + ".pem"),
            "-subj", "/CN=" + cn, "-out", self.path(name + ".csr"))
        run("openssl", "x509", "-req", "-in", self.path(name + ".csr"), "-signkey",
            self.path(name + ".pem"), "-days", "30", "-set_serial", serial, "-out",
            self.path(name + ".crt"))
        self.der_variants(name)

    def der_variants(self, name):
        run("openssl", "x509", "-in", self.path(name + ".crt"), "-outform", "DER", "-out",
            self.path(name + ".cer"))
        run("openssl", "pkey", "-in", self.path(name + ".pem"), "-outform", "DER", "-out",
            self.path(name + ".der"))


def sign_file(hash_, key, cert, module, dest=None, keyid=False):
    args = [SIGN_FILE] + (["-k"] if keyid else []) + [hash_, key, cert, module]
    if dest:
        args.append(dest)
    run(*args)


def kmm_sign(*args, check=True):
    return run(KMM_SIGN, "--log-level", "error", *args, check=check)


def modules(d, sizes, seed):
    rnd = random.Random(seed)
    paths = []
    for i, size in enumerate(sizes):
        p = os.path.join(d, f"gen{seed}-{i:03d}.ko")
        body = bytes(rnd.getrandbits(8) for _ in range(min(size, 4096)))
        data = (b"\x7fELF" + (body * (size // max(len(body), 1) + 1)))[:size]
        write(p, data)
        paths.append(p)
    return paths


def compare_many(tmp, keys, name, hash_, key, cert, kmm_key, kmm_cert, mods, keyid=False):
    """sign-file on copies, kmm-sign in one run on other copies; all must be equal."""
    ref_dir = os.path.join(tmp, name + "-ref")
    our_dir = os.path.join(tmp, name + "-ours")
    os.makedirs(ref_dir)
    os.makedirs(our_dir)
    ours = []
    for m in mods:
        shutil.copy(m, ref_dir)
        shutil.copy(m, our_dir)
        sign_file(hash_, key, cert, os.path.join(ref_dir, os.path.basename(m)), keyid=keyid)
        ours.append(os.path.join(our_dir, os.path.basename(m)))
    kmm_sign("sign", "--key", kmm_key, "--cert", kmm_cert, "--hash", hash_,
             *(["--keyid"] if keyid else []), *ours)
    for m in mods:
        a = read(os.path.join(ref_dir, os.path.basename(m)))
        b = read(os.path.join(our_dir, os.path.basename(m)))
        expect(a == b, f"{os.path.basename(m)}: differs from sign-file "
                       f"({len(a)} vs {len(b)} bytes)")
    return ours


def sig_lines(text):
    """The signature fields of modinfo-style output, continuation lines included."""
    lines, keep = [], False
    for line in text.splitlines():
        if line.startswith("\t"):
            if keep:
                lines.append(line)
            continue
        key = line.split(":", 1)[0]
        keep = key in SIG_FIELDS
        if keep:
            lines.append(line)
    return lines


def split_signed(data):
    expect(data.endswith(MAGIC), "no signature magic")
    sig_len = struct.unpack(">I", data[-len(MAGIC) - 4:-len(MAGIC)])[0]
    end = len(data) - len(MAGIC) - 12
    return data[:end - sig_len], data[end - sig_len:end]


def openssl_verify(tmp, signed, cert):
    module, der = split_signed(read(signed))
    write(os.path.join(tmp, "v.mod"), module)
    write(os.path.join(tmp, "v.p7"), der)
    p = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
            os.path.join(tmp, "v.p7"), "-content", os.path.join(tmp, "v.mod"), "-certfile",
            cert, "-nointern", "-noverify", "-out", "/dev/null", check=False)
    return p.returncode == 0, p.stderr.decode(errors="replace")


def build_elf(tmp, name, desc, pad):
    c = os.path.join(tmp, name + ".c")
    with open(c, "w") as f:
        f.write(ELF_SOURCE.format(desc=desc, pad=pad))
    ko = os.path.join(tmp, name + ".ko")
    run("gcc", "-c", c, "-o", ko)
    return ko


def main():
    out("1..16")
    if not (os.path.isfile(SIGN_FILE) and os.access(SIGN_FILE, os.X_OK)):
        out(f"Bail out! sign-file not found at {SIGN_FILE} "
            "(apt-get install linux-kbuild-6.1)")
        return 1
    if not os.access(KMM_SIGN, os.X_OK):
        out(f"Bail out! {KMM_SIGN} not built")
        return 1

    tmp = tempfile.mkdtemp(prefix="kmm-sign-t.")
    try:
        return tests(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def tests(tmp):
    keys = Keys(tmp)
    keys.kbuild_rsa("rsa2048", 2048, "kmm build signing key")
    keys.plain_cert("rsa4096", ["-newkey", "rsa:4096"], "kmm no skid 4096", "0x80ff01")
    keys.plain_cert("p256", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                    "kmm ec p256", "0x1234")
    keys.plain_cert("p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
                    "kmm ec p384", "0x00a1b2")
    k = keys.path
    gen = os.path.join(tmp, "gen")
    os.makedirs(gen)
    sizes = [1, 2, 3, 41, 100, 511, 512, 513, 4095, 4096, 4097, 10000, 65535, 65536, 65537,
             100003, 262144, 1 << 20, (1 << 20) + 7, 3 << 20]
    many = modules(gen, sizes + [random.Random(7).randint(1, 300000) for _ in range(20)], 1)
    few = modules(gen, [1, 777, 65536, 200000, 1 << 20], 2)

    @group(f"RSA-2048 kbuild key, PEM, sha256: {len(many)} modules byte-identical to sign-file")
    def rsa2048_sha256():
        compare_many(tmp, keys, "rsa2048-sha256", "sha256", k("rsa2048.pem"),
                     k("rsa2048.crt"), k("rsa2048.pem"), k("rsa2048.crt"), many)
    rsa2048_sha256()

    @group("RSA-2048 sha384 and sha512, DER key and certificate: byte-identical "
           "(sign-file given the PEM key and the DER certificate)")
    def rsa_hashes_der():
        for h in ("sha384", "sha512"):
            compare_many(tmp, keys, "rsa2048-" + h, h, k("rsa2048.pem"), k("rsa2048.cer"),
                         k("rsa2048.der"), k("rsa2048.cer"), few)
    rsa_hashes_der()

    @group("RSA-4096, certificate without subjectKeyIdentifier, serial 0x80ff01, sha512: "
           "byte-identical")
    def rsa4096():
        compare_many(tmp, keys, "rsa4096", "sha512", k("rsa4096.pem"), k("rsa4096.crt"),
                     k("rsa4096.pem"), k("rsa4096.cer"), few)
    rsa4096()

    @group("signer named by key id (sign-file -k, kmm-sign --keyid): byte-identical")
    def keyid():
        compare_many(tmp, keys, "keyid", "sha256", k("rsa2048.pem"), k("rsa2048.crt"),
                     k("rsa2048.pem"), k("rsa2048.crt"), few[:3], keyid=True)
        p = kmm_sign("sign", "--key", k("rsa4096.pem"), "--cert", k("rsa4096.crt"), "--keyid",
                     os.path.join(tmp, "keyid-ours", os.path.basename(few[0])), check=False)
        expect(p.returncode == 1 and b"subjectKeyIdentifier" in p.stderr,
               "--keyid with a certificate without SKID must fail clearly: "
               + p.stderr.decode(errors="replace"))
    keyid()

    @group("re-signing replaces the signature: sign-file's stacked output and a module "
           "signed by another key re-sign to the single-signature bytes")
    def resign():
        d = os.path.join(tmp, "resign")
        os.makedirs(d)
        for i, m in enumerate(few):
            ref = os.path.join(d, f"ref{i}.ko")
            stacked = os.path.join(d, f"stacked{i}.ko")
            shutil.copy(m, ref)
            shutil.copy(m, stacked)
            sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), ref)
            sign_file("sha512", k("p256.pem"), k("p256.crt"), stacked)
            sign_file("sha384", k("rsa4096.pem"), k("rsa4096.crt"), stacked)
            kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), stacked)
            expect(read(ref) == read(stacked), f"module {i}: re-signed stacked module differs")
            # And once more, over our own signature.
            kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), stacked)
            expect(read(ref) == read(stacked), f"module {i}: second re-sign differs")
    resign()

    @group("ECDSA P-256/P-384 (randomised signatures): each tool's output verifies with "
           "the other's verifier and openssl cms; same layout and info")
    def ecdsa():
        d = os.path.join(tmp, "ec")
        os.makedirs(d)
        for curve, h in (("p256", "sha256"), ("p384", "sha384"), ("p384", "sha512")):
            for i, m in enumerate(few[:3]):
                ref = os.path.join(d, f"{curve}-{h}-ref{i}.ko")
                ours = os.path.join(d, f"{curve}-{h}-ours{i}.ko")
                shutil.copy(m, ref)
                shutil.copy(m, ours)
                sign_file(h, k(curve + ".pem"), k(curve + ".crt"), ref)
                kmm_sign("sign", "--key", k(curve + ".der"), "--cert", k(curve + ".cer"),
                         "--hash", h, ours)
                kmm_sign("verify", "--cert", k(curve + ".crt"), ref, ours)
                for f in (ref, ours):
                    ok, err = openssl_verify(d, f, k(curve + ".crt"))
                    expect(ok, f"openssl cms -verify {os.path.basename(f)}: {err}")
                ma, _ = split_signed(read(ref))
                mb, _ = split_signed(read(ours))
                expect(ma == mb == read(m), "module bytes before the signature differ")
                ia = sig_lines(kmm_sign("info", ref).stdout.decode())
                ib = sig_lines(kmm_sign("info", ours).stdout.decode())
                expect(ia[:4] == ib[:4], f"info differs: {ia[:4]} vs {ib[:4]}")
    ecdsa()

    @group("verify: accepts every sign-file output with its certificate; rejects another "
           "certificate, a changed module byte, an unsigned module (exit 1, file named)")
    def verify():
        ref = os.path.join(tmp, "rsa2048-sha256-ref")
        files = sorted(glob.glob(os.path.join(ref, "*.ko")))
        expect(len(files) == len(many), "reference files missing")
        p = kmm_sign("verify", "--cert", k("rsa2048.cer"), *files)
        expect(p.stdout.decode().count(": OK\n") == len(files), "not every file verified")
        p = kmm_sign("verify", "--cert", k("rsa4096.crt"), files[5], check=False)
        expect(p.returncode == 1 and os.path.basename(files[5]).encode() in p.stderr,
               "another certificate was accepted: " + p.stderr.decode(errors="replace"))
        bad = os.path.join(tmp, "tampered.ko")
        data = bytearray(read(files[-1]))
        data[len(data) // 3] ^= 0x40
        write(bad, bytes(data))
        p = kmm_sign("verify", "--cert", k("rsa2048.crt"), bad, check=False)
        expect(p.returncode == 1 and b"does not verify" in p.stderr,
               "tampered module accepted: " + p.stderr.decode(errors="replace"))
        p = kmm_sign("verify", "--cert", k("rsa2048.crt"), many[0], check=False)
        expect(p.returncode == 1 and b"not signed" in p.stderr, "unsigned module accepted")
    verify()

    @group("info matches modinfo (signer, sig_key, sig_hashalgo, signature) on ELF modules "
           "signed by sign-file and by kmm-sign")
    def info_vs_modinfo():
        d = os.path.join(tmp, "elf")
        os.makedirs(d)
        combos = [("rsa2048", "sha256"), ("rsa2048", "sha512"), ("rsa4096", "sha384"),
                  ("p256", "sha256"), ("p384", "sha384")]
        for i, (key, h) in enumerate(combos):
            ko = build_elf(d, f"elf{i}", f"kmm info test {i}", 100 + i * 5000)
            ours = os.path.join(d, f"elf{i}-ours.ko")
            shutil.copy(ko, ours)
            sign_file(h, k(key + ".pem"), k(key + ".crt"), ko)
            kmm_sign("sign", "--key", k(key + ".pem"), "--cert", k(key + ".crt"), "--hash",
                     h, ours)
            for f in (ko, ours):
                want = sig_lines(run("modinfo", f).stdout.decode())
                got = sig_lines(kmm_sign("info", f).stdout.decode())
                expect(len(want) >= 5, f"modinfo shows no signature for {f}: {want}")
                expect(got == want, f"{os.path.basename(f)}:\nmodinfo: {want}\nkmm-sign: {got}")
    info_vs_modinfo()

    @group("compressed modules (.ko.xz, .ko.zst, .ko.gz): signed inside, recompressed, "
           "the decompressed module is sign-file's bytes; xz uses CRC32; modinfo reads "
           "xz and zst; a signature sign-file put after the compressed bytes is refused "
           "by verify/info and moved inside by sign")
    def compressed():
        d = os.path.join(tmp, "comp")
        os.makedirs(d)
        ko = build_elf(d, "celf", "kmm compressed", 30000)
        ref = os.path.join(d, "ref.ko")
        shutil.copy(ko, ref)
        sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), ref)
        want_info = sig_lines(run("modinfo", ref).stdout.decode())
        tools = {
            "xz": (["xz", "--check=crc32", "--lzma2=dict=1MiB", "-kf"], ["xz", "-dc"]),
            "zst": (["zstd", "-qf"], ["zstd", "-dcq"]),
            "gz": (["gzip", "-nkf"], ["gzip", "-dc"]),
        }
        for ext, (comp, decomp) in tools.items():
            m = os.path.join(d, f"m-{ext}.ko")
            shutil.copy(ko, m)
            run(*comp, m)
            packed = m + "." + ext
            # Twice: the second run replaces the signature inside.
            for _ in range(2):
                kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), packed)
            inner = run(*decomp, packed).stdout
            expect(inner == read(ref), f".ko.{ext}: decompressed module differs from sign-file")
            kmm_sign("verify", "--cert", k("rsa2048.crt"), packed)
            got = sig_lines(kmm_sign("info", packed).stdout.decode())
            expect(got == want_info, f".ko.{ext}: info {got}")
            if ext in ("xz", "zst"):
                mi = sig_lines(run("modinfo", packed).stdout.decode())
                expect(mi == want_info, f".ko.{ext}: modinfo {mi}")
        xzinfo = run("xz", "-lvv", os.path.join(d, "m-xz.ko.xz")).stdout.decode()
        expect("CRC32" in xzinfo and "CRC64" not in xzinfo, "xz check is not CRC32")
        # sign-file handed a compressed module appends to the compressed bytes, where the
        # kernel never looks: verify and info say so, sign moves the signature inside.
        for ext, (comp, decomp) in tools.items():
            m = os.path.join(d, f"outer-{ext}.ko")
            shutil.copy(ko, m)
            run(*comp, m)
            packed = m + "." + ext
            sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), packed)
            for cmd in (["verify", "--cert", k("rsa2048.crt")], ["info"]):
                p = kmm_sign(*cmd, packed, check=False)
                expect(p.returncode == 1 and b"appended to the" in p.stderr,
                       f"{cmd[0]} .ko.{ext} signed outside: " + p.stderr.decode(errors="replace"))
            kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), packed)
            expect(run(*decomp, packed).stdout == read(ref),
                   f".ko.{ext} signed outside: re-signed module differs from sign-file")
    compressed()

    @group("an independent verifier (openssl cms -verify, detached, no chain) accepts "
           "kmm-sign's RSA output")
    def openssl_cross():
        for f in sorted(glob.glob(os.path.join(tmp, "rsa4096-ours", "*.ko"))):
            ok, err = openssl_verify(tmp, f, k("rsa4096.crt"))
            expect(ok, f"{os.path.basename(f)}: {err}")
    openssl_cross()

    @group("hostile and wrong input: corrupt trailer refused and the file left as it was; "
           "encrypted key; key/cert mismatch; usage errors exit 2; --help, --version")
    def hostile():
        d = os.path.join(tmp, "hostile")
        os.makedirs(d)
        bad = os.path.join(d, "corrupt.ko")
        data = b"\x7fELF" + b"x" * 200 + b"\0\0\2\0\0\0\0\0" + struct.pack(">I", 10 ** 6) + MAGIC
        write(bad, data)
        p = kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), bad,
                     check=False)
        expect(p.returncode == 1 and b"corrupt.ko" in p.stderr and b"sig_len" in p.stderr,
               "corrupt trailer: " + p.stderr.decode(errors="replace"))
        expect(read(bad) == data, "corrupt module was modified")
        expect(not glob.glob(os.path.join(d, "*.tmp.*")), "temporary file left behind")
        run("openssl", "pkey", "-in", k("p256.pem"), "-aes128", "-passout", "pass:x", "-out",
            os.path.join(d, "enc.pem"))
        p = kmm_sign("sign", "--key", os.path.join(d, "enc.pem"), "--cert", k("p256.crt"),
                     many[0], check=False)
        expect(p.returncode == 1 and b"encrypted" in p.stderr, "encrypted key accepted")
        p = kmm_sign("sign", "--key", k("p256.pem"), "--cert", k("rsa2048.crt"), many[0],
                     check=False)
        expect(p.returncode == 1 and b"does not match" in p.stderr, "mismatched key accepted")
        for args in (["sign", many[0]], ["sign", "--key", k("p256.pem"), "--hash", "md5",
                                         many[0]],
                     ["verify", many[0]], ["info"], ["frobnicate"], ["--nope"],
                     ["sign", "--key", k("p256.pem"), "-o", "x", many[0], many[1]]):
            p = kmm_sign(*args, check=False)
            expect(p.returncode == 2, f"{args}: exit {p.returncode}, want 2")
        helptext = kmm_sign("--help").stdout.decode()
        for c in ("sign --key", "verify --cert", "info FILE", "sign-file [-k]"):
            expect("  " + c in helptext, f"--help does not list '{c}'")
        expect(kmm_sign("--version").stdout.startswith(b"kmm-sign "), "--version")
    hostile()

    @group("a real module built against the installed kernel headers: byte-identical, "
           "modinfo matches")
    def real_module():
        d = os.path.join(tmp, "real")
        shutil.copytree(os.path.join(SRC, "tests", "integration", "sign", "module"), d)
        builds = sorted(glob.glob("/lib/modules/*/build/Makefile"))
        kdir = os.path.dirname(builds[-1])
        run("make", "-s", "-C", kdir, "M=" + d, "modules")
        ko = os.path.join(d, "kmm_sign_test.ko")
        ours = os.path.join(d, "ours.ko")
        shutil.copy(ko, ours)
        sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), ko)
        kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), ours)
        expect(read(ko) == read(ours), "real module differs from sign-file")
        want = sig_lines(run("modinfo", ko).stdout.decode())
        got = sig_lines(kmm_sign("info", ours).stdout.decode())
        expect(got == want, f"modinfo {want}\nkmm-sign {got}")
    if glob.glob("/lib/modules/*/build/Makefile") and shutil.which("make"):
        real_module()
    else:
        missing("a real module built against the installed kernel headers",
             "no kernel headers under /lib/modules/*/build (linux-headers-amd64)")

    @group("kbuild's combined signing_key.pem (key and certificate in one file) "
           "works without --cert")
    def combined():
        both = os.path.join(tmp, "signing_key.pem")
        write(both, read(k("rsa2048.pem")) + read(k("rsa2048.crt")))
        m = os.path.join(tmp, "combined.ko")
        ref = os.path.join(tmp, "combined-ref.ko")
        shutil.copy(few[1], m)
        shutil.copy(few[1], ref)
        sign_file("sha256", both, k("rsa2048.cer"), ref)
        kmm_sign("sign", "--key", both, m)
        expect(read(m) == read(ref), "differs from sign-file")
    combined()

    @group("`kmm-sign sign-file` takes sign-file's arguments ([-k] HASH KEY CERT MODULE "
           "[DEST]) and writes the same bytes")
    def compat():
        d = os.path.join(tmp, "compat")
        os.makedirs(d)
        for i, (opts, h, key, cert) in enumerate([
                ([], "sha256", "rsa2048.pem", "rsa2048.cer"),
                (["-k"], "sha384", "rsa2048.pem", "rsa2048.crt"),
                ([], "sha512", "rsa4096.pem", "rsa4096.crt")]):
            ref = os.path.join(d, f"ref{i}.ko")
            inplace = os.path.join(d, f"inplace{i}.ko")
            dest = os.path.join(d, f"dest{i}.ko")
            shutil.copy(few[i], ref)
            shutil.copy(few[i], inplace)
            sign_file(h, k(key), k(cert), ref, keyid=bool(opts))
            kmm_sign("sign-file", *opts, h, k(key), k(cert), inplace)
            kmm_sign("sign-file", *opts, h, k(key), k(cert), few[i], dest)
            expect(read(inplace) == read(ref), f"{i}: in place differs from sign-file")
            expect(read(dest) == read(ref), f"{i}: DEST differs from sign-file")
        p = kmm_sign("sign-file", "-d", "sha256", k("rsa2048.pem"), k("rsa2048.crt"), few[0],
                     check=False)
        expect(p.returncode == 2 and b"not supported" in p.stderr, "-d must be refused")
    compat()

    distro = sorted(glob.glob(os.path.join(
        os.environ.get("KMM_SIGN_DISTRO_MODULES") or distro_modules_dir(), "**", "*.ko"),
        recursive=True))[:150]

    @group(f"{len(distro)} distribution-signed modules: info matches modinfo, and re-signing "
           "replaces the distribution's signature with sign-file's bytes")
    def distro_modules():
        d = os.path.join(tmp, "distro")
        os.makedirs(d)
        ours = []
        for i, f in enumerate(distro):
            want = sig_lines(run("modinfo", f).stdout.decode())
            got = sig_lines(kmm_sign("info", f).stdout.decode())
            expect(got == want, f"{f}:\nmodinfo: {want[:4]}\nkmm-sign: {got[:4]}")
            module, _ = split_signed(read(f))
            write(os.path.join(d, f"{i}-ref.ko"), module)
            sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), os.path.join(d, f"{i}-ref.ko"))
            shutil.copy(f, os.path.join(d, f"{i}-ours.ko"))
            ours.append(os.path.join(d, f"{i}-ours.ko"))
        kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), *ours)
        for i, f in enumerate(distro):
            expect(read(os.path.join(d, f"{i}-ours.ko")) == read(os.path.join(d, f"{i}-ref.ko")),
                   f"{f}: re-signed module differs from sign-file")
    distro_modules()

    @group("throughput: a 64 MiB module, kmm-sign vs sign-file (figures below)")
    def throughput():
        big = os.path.join(tmp, "big.ko")
        write(big, b"\x7fELF" + os.urandom(1 << 20) * 64)
        ref = os.path.join(tmp, "big-ref.ko")
        shutil.copy(big, ref)
        t0 = time.monotonic()
        sign_file("sha256", k("rsa2048.pem"), k("rsa2048.crt"), ref)
        t1 = time.monotonic()
        kmm_sign("sign", "--key", k("rsa2048.pem"), "--cert", k("rsa2048.crt"), big)
        t2 = time.monotonic()
        expect(read(big) == read(ref), "64 MiB module differs from sign-file")
        out(f"# 64 MiB: sign-file {t1 - t0:.2f} s ({64 / (t1 - t0):.0f} MiB/s), "
            f"kmm-sign {t2 - t1:.2f} s ({64 / (t2 - t1):.0f} MiB/s) "
            f"(kmm-sign from {os.path.basename(BUILD)})")
    throughput()

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
