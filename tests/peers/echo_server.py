#!/usr/bin/env python3
"""Echo server for the mcpgw end-to-end tests.

Usage: echo_server.py ADDR:PORT [ADDR:PORT ...]   (IPv6 as [addr]:port)

For every connection it first sends "peer=<ip> <port>\\n" (the peer address as
this server sees it, so a test can tell a direct connection from one that went
through the gateway), then echoes until EOF, then shuts down its write side so
the client observes a half-close travelling back, and closes.
Prints "ready" once every address listens.
"""
import socket
import sys
import threading


def parse(spec):
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
        return socket.AF_INET6, host, int(port)
    host, _, port = spec.rpartition(":")
    return socket.AF_INET, host, int(port)


def handle(conn, peer):
    try:
        conn.settimeout(30)
        conn.sendall(f"peer={peer[0]} {peer[1]}\n".encode())
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError as e:
        print(f"echo_server: {peer}: {e!r}", file=sys.stderr, flush=True)
    finally:
        conn.close()


def serve(sock):
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=handle, args=(conn, peer), daemon=True).start()


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: echo_server.py ADDR:PORT [ADDR:PORT ...]")
    socks = []
    for spec in sys.argv[1:]:
        family, host, port = parse(spec)
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Keep v6 listeners from also claiming the v4 port.
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        s.listen(128)
        socks.append(s)
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
