#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Runs one shell command in the real-node guest through its command channel.

usage: chan.py SOCKET TIMEOUT COMMAND

SOCKET is the host end of the guest's virtio-serial port `kmm.chan` (a unix
socket QEMU serves). The guest's agent (tests/node/guest/init) reads
    KMMREQ <id> <base64 of the command>
runs it with sh, stdout and stderr together, and answers
    KMMOUT <id> <base64 line>...   (the output, base64 in lines)
    KMMEND <id> <exit status>
Lines of another id (an earlier request that timed out) are skipped. The
output goes to stdout; the exit status is the command's, 124 on timeout and
125 when the channel cannot be used.
"""
import base64
import os
import socket
import sys
import time


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, timeout, command = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    req_id = f"{os.getpid()}-{time.monotonic_ns()}"
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        print(f"chan: cannot connect to {path}: {e}", file=sys.stderr)
        return 125
    payload = base64.b64encode(command.encode()).decode()
    sock.sendall(f"KMMREQ {req_id} {payload}\n".encode())
    buf = b""
    out = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"chan: no answer within {timeout:.0f} s", file=sys.stderr)
            return 124
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            print("chan: the guest closed the channel", file=sys.stderr)
            return 125
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            parts = line.decode("ascii", "replace").strip().split(" ")
            if len(parts) < 3 or parts[1] != req_id:
                continue
            if parts[0] == "KMMOUT":
                out.append(parts[2])
            elif parts[0] == "KMMEND":
                sys.stdout.buffer.write(base64.b64decode("".join(out)))
                sys.stdout.flush()
                return int(parts[2])


if __name__ == "__main__":
    sys.exit(main())
