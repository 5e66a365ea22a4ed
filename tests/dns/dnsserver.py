#!/usr/bin/env python3
"""A tiny authoritative DNS server for the tests (stdlib only, UDP).

    dnsserver.py --listen 10.8.0.1 --answer 198.51.100.2 [--log FILE]

Every A query gets one A record with the fixed `--answer` address (TTL 1),
whatever the name, so a test that looks a name up through the resolver
sees WHICH server answered.  AAAA and other types get an empty NOERROR
answer (NODATA) so resolvers do not retry elsewhere.  An EDNS0 OPT record
in the query is echoed, because systemd-resolved probes EDNS support and
would otherwise spend retries downgrading.  Each query's name and type are
appended to `--log` (one "name TYPE" line) so a test can also tell which
server was asked.

It prints "ready" on stdout once the socket is bound.

Client mode, for asking a resolver (e.g. resolved's stub) from inside a
namespace:

    dnsserver.py --query host.vpn.example [--server 127.0.0.53] [--timeout 5]

prints the first A address of the answer, or "rcode=N" / "timeout".
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys

TYPE_A, TYPE_OPT = 1, 41
TYPE_NAMES = {1: "A", 28: "AAAA", 6: "SOA", 2: "NS", 12: "PTR", 16: "TXT", 33: "SRV", 65: "HTTPS"}


def parse_question(packet: bytes) -> tuple[int, int, str, int, int, bool]:
    """(id, flags, name, qtype, end of question, has OPT) of a query."""
    qid, flags, qdcount, _an, _ns, arcount = struct.unpack("!6H", packet[:12])
    if qdcount != 1:
        raise ValueError("want exactly one question")
    labels, pos = [], 12
    while True:
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compression in a question")
        labels.append(packet[pos:pos + length].decode("ascii", "replace"))
        pos += length
    qtype, _qclass = struct.unpack("!HH", packet[pos:pos + 4])
    end = pos + 4
    has_opt = False
    rest = end
    for _ in range(arcount):  # additional section: look for OPT (root name, type 41)
        if packet[rest] == 0 and struct.unpack("!H", packet[rest + 1:rest + 3])[0] == TYPE_OPT:
            has_opt = True
        rdlen = struct.unpack("!H", packet[rest + 9:rest + 11])[0]
        rest += 11 + rdlen
    return qid, flags, ".".join(labels), qtype, end, has_opt


def answer(packet: bytes, address: bytes) -> tuple[bytes, str, int]:
    qid, flags, name, qtype, end, has_opt = parse_question(packet)
    rd = flags & 0x0100
    records = b""
    ancount = 0
    if qtype == TYPE_A:
        # name pointer to offset 12 (the question), type A, class IN, TTL 1
        records = struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, 1, 4) + address
        ancount = 1
    additional = struct.pack("!BHHIH", 0, TYPE_OPT, 1232, 0, 0) if has_opt else b""
    header = struct.pack("!6H", qid, 0x8400 | rd | 0x0080, 1, ancount, 0, 1 if has_opt else 0)
    return header + packet[12:end] + records + additional, name, qtype


def serve(listen: str, address: str, log_path: str | None) -> None:
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listen, 53))
    raw = socket.inet_aton(address)
    log = open(log_path, "a", buffering=1) if log_path else None
    print("ready", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            reply, name, qtype = answer(packet, raw)
        except (ValueError, IndexError, struct.error):
            continue
        if log:
            log.write(f"{name} {TYPE_NAMES.get(qtype, qtype)}\n")
        sock.sendto(reply, peer)


def query(name: str, server: str, timeout: float) -> str:
    qid = int.from_bytes(os.urandom(2), "big")
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"
    packet = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", TYPE_A, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, 53))
        try:
            while True:
                reply, _ = sock.recvfrom(4096)
                if reply[:2] == packet[:2]:
                    break
        except socket.timeout:
            return "timeout"
    _id, flags, _qd, ancount, _ns, _ar = struct.unpack("!6H", reply[:12])
    if flags & 0x000F:
        return f"rcode={flags & 0x000F}"
    pos = 12 + len(question) + 4
    for _ in range(ancount):
        while reply[pos] not in (0,) and not reply[pos] & 0xC0:  # name: labels ...
            pos += reply[pos] + 1
        pos += 2 if reply[pos] & 0xC0 else 1  # ... ending in a pointer or the root
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == TYPE_A and rdlen == 4:
            return socket.inet_ntoa(reply[pos:pos + 4])
        pos += rdlen
    return "nodata"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--listen")
    p.add_argument("--answer")
    p.add_argument("--log")
    p.add_argument("--query")
    p.add_argument("--server", default="127.0.0.53")
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args()
    if args.query:
        print(query(args.query, args.server, args.timeout))
        return 0
    if not (args.listen and args.answer):
        p.error("--listen and --answer, or --query")
    serve(args.listen, args.answer, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
