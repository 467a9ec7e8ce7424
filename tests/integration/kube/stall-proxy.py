#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A loopback TCP proxy whose forwarding can be stalled, for leader-stall.t.

stall-proxy.py UPSTREAM_PORT PORT_FILE: listens on 127.0.0.1 (a free port,
written to PORT_FILE) and relays every connection to 127.0.0.1:UPSTREAM_PORT
byte for byte (TLS passes through, so HTTP/2 is negotiated end to end).
SIGUSR1 stalls it: nothing is read, forwarded or accepted any more, but every
connection stays open, as on a path that silently drops packets. SIGUSR2
resumes, delivering what the kernel buffered meanwhile. SIGTERM ends it.
"""
import os
import selectors
import signal
import socket
import sys
import time

upstream_port = int(sys.argv[1])
port_file = sys.argv[2]
stalled = False
running = True


def on_signal(sig, _frame):
    global stalled, running
    if sig == signal.SIGUSR1:
        stalled = True
    elif sig == signal.SIGUSR2:
        stalled = False
    else:
        running = False


for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
    signal.signal(s, on_signal)

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
listener.setblocking(False)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % listener.getsockname()[1])
# Renamed into place so a reader never sees a half-written file.
os.rename(port_file + ".tmp", port_file)

sel = selectors.DefaultSelector()
peer = {}  # socket -> the socket its bytes go to
pending = {}  # socket -> bytes read but not yet written to its peer


def close_pair(s):
    p = peer.pop(s, None)
    for x in (s, p):
        if x is None:
            continue
        peer.pop(x, None)
        pending.pop(x, None)
        try:
            sel.unregister(x)
        except (KeyError, ValueError):
            pass
        x.close()


def accept():
    try:
        c, _ = listener.accept()
    except BlockingIOError:
        return
    u = socket.create_connection(("127.0.0.1", upstream_port))
    for x in (c, u):
        x.setblocking(False)
    peer[c], peer[u] = u, c
    pending[c], pending[u] = b"", b""
    sel.register(c, selectors.EVENT_READ)
    sel.register(u, selectors.EVENT_READ)


def pump(s):
    try:
        data = s.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        close_pair(s)
        return
    pending[s] += data


def flush():
    for s, data in list(pending.items()):
        if not data or s not in peer:
            continue
        try:
            n = peer[s].send(data)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            close_pair(s)
            continue
        pending[s] = data[n:]


sel.register(listener, selectors.EVENT_READ)
while running:
    # While stalled nothing is read: the kernel buffers fill and TCP stops
    # the senders, but no connection is closed or reset.
    if stalled:
        time.sleep(0.02)
        continue
    events = sel.select(timeout=0.02)
    for key, _ in events:
        if key.fileobj is listener:
            accept()
        elif key.fileobj in peer:
            pump(key.fileobj)
    flush()
