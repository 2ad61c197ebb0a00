#!/usr/bin/env python3
"""Client for the mcpgw end-to-end tests.

Usage: client.py HOST PORT [--family 4|6|mapped] [--payload TEXT] [--mark N] [--udp]

Connects, sends the payload, half-closes (shutdown write), reads until EOF and
prints one JSON line: pid, uid, peername, sockname, server_saw (from the echo
server's "peer=" line), sent, echo, error. A failed connect is reported in
"error" (e.g. "ConnectionRefusedError") with exit code 0, so tests can assert
on fail-closed behaviour.

--mark N sets SO_MARK on the socket before connecting (needs CAP_NET_ADMIN or CAP_NET_RAW).
--repeat S connects again and again for S seconds instead and prints the counts of
connections that reached the server directly, through the gateway, or were refused.
--udp sends the payload as one datagram twice instead, once with connect()+send() and once
with sendto(), and reports each outcome in "udp" (null, or the error's name).
"""
import argparse
import json
import os
import socket


SO_MARK = 36


def udp(a):
    family = socket.AF_INET6 if a.family == "6" else socket.AF_INET
    dst = (a.host, a.port)
    payload = (a.payload or f"datagram from pid {os.getpid()}").encode()
    out = {"pid": os.getpid(), "uid": os.getuid(), "udp": {}}
    for how in ("connect", "sendto"):
        s = socket.socket(family, socket.SOCK_DGRAM)
        if a.mark is not None:
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, a.mark)
        try:
            if how == "connect":
                s.connect(dst)
                s.send(payload)
            else:
                s.sendto(payload, dst)
            out["udp"][how] = None
        except OSError as e:
            out["udp"][how] = type(e).__name__
        finally:
            s.close()
    print(json.dumps(out), flush=True)


def repeat(a):
    import time
    counts = {"direct": 0, "gateway": 0, "refused": 0, "other": 0}
    family = socket.AF_INET6 if a.family == "6" else socket.AF_INET
    end = time.monotonic() + a.repeat
    while time.monotonic() < end:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((a.host, a.port))
            mine = s.getsockname()[:2]
            s.sendall(b"x\n")
            s.shutdown(socket.SHUT_WR)
            buf = b""
            while True:
                data = s.recv(4096)
                if not data:
                    break
                buf += data
            line = buf.decode(errors="replace").partition("\n")[0]
            ip, _, port = line[len("peer="):].rpartition(" ")
            if not line.startswith("peer="):
                counts["other"] += 1
            elif ip == mine[0] and int(port) == mine[1]:
                counts["direct"] += 1
            else:
                counts["gateway"] += 1
        except (ConnectionRefusedError, PermissionError):
            counts["refused"] += 1
        except OSError:
            counts["other"] += 1
        finally:
            s.close()
    print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "counts": counts}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--family", choices=["4", "6", "mapped"], default="4")
    ap.add_argument("--payload", default=None)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--mark", type=lambda v: int(v, 0), default=None)
    ap.add_argument("--udp", action="store_true")
    ap.add_argument("--repeat", type=float, default=None)
    a = ap.parse_args()
    if a.udp:
        return udp(a)
    if a.repeat is not None:
        return repeat(a)

    payload = a.payload
    if payload is None:
        payload = f"hello from pid {os.getpid()}\n" + "x" * 4096 + "\nbye\n"
    out = {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "peername": None,
        "sockname": None,
        "server_saw": None,
        "sent": payload,
        "echo": None,
        "error": None,
    }
    if a.family == "4":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dst = (a.host, a.port)
    elif a.family == "6":
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        dst = (a.host, a.port)
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dst = ("::ffff:" + a.host, a.port)
    s.settimeout(a.timeout)
    if a.mark is not None:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, a.mark)
    try:
        s.connect(dst)
        out["peername"] = list(s.getpeername()[:2])
        out["sockname"] = list(s.getsockname()[:2])
        s.sendall(payload.encode())
        s.shutdown(socket.SHUT_WR)
        buf = bytearray()
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
        text = buf.decode(errors="replace")
        line, nl, rest = text.partition("\n")
        if nl and line.startswith("peer="):
            ip, _, port = line[len("peer="):].rpartition(" ")
            out["server_saw"] = [ip, int(port)]
            out["echo"] = rest
        else:
            out["echo"] = text
    except OSError as e:
        out["error"] = type(e).__name__ if type(e) is not OSError else f"OSError: {e}"
    finally:
        s.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
