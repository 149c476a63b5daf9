"""A hostile peer that is not zest's own code: aioquic speaking zest's peer protocol
(docs/PROTOCOL.md) just far enough to attack a zestd's peer port, as the probe of issue 16
did. Prints one JSON line of what it saw.

    quic_attacker.py HOST PORT memory SECONDS
        2 connections, each with 63 streams sending a request frame's length prefix and
        all but its last byte: half claim 4 MiB (the old frame limit), half 16 000 bytes
        (under the request limit, so the server must time them out). Held for SECONDS.
    quic_attacker.py HOST PORT slots FILE_HEX CHUNKS SECONDS
        1 connection opening 60 `get` streams for chunks [0, CHUNKS) of FILE_HEX, then
        freezing (no packets read, no ACKs) for SECONDS; then counts the replies.
    quic_attacker.py HOST PORT ask FILE_HEX...
        1 connection asking for chunk 0 of each file; prints what each answer was: "chunk",
        or the error's code ("gone", "not_found", ...).
    quic_attacker.py HOST PORT flood N SECONDS
        N connections dialled at once, each saying hello; holds the admitted ones open
        for SECONDS (answering keep-alives, asking nothing), then counts the ones the
        server closed.
"""

import asyncio
import datetime
import json
import os
import ssl
import struct
import sys
import tempfile
import time

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def frame(body):
    return struct.pack(">I", len(body)) + body


def hello():
    # Hello { version = 1; capabilities = 2; agent = 3 }
    return frame(field(1, 0, 1) + field(2, 2, b"get") + field(3, 2, b"aioquic-attacker"))


def get_request(file_hash, start, end):
    # Request { oneof kind { get = 3 } }, GetRequest { file = 1; start = 2; end = 3 }
    get = field(1, 2, file_hash) + field(2, 0, start) + field(3, 0, end)
    return frame(field(3, 2, get))


def certificate(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aioquic-attacker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def classify(reply):
    """The first Response frame of a reply: "chunk", or the Error's code."""
    if len(reply) < 5:
        return "nothing"
    body = reply[4 : 4 + struct.unpack(">I", reply[:4])[0]]
    key, i = read_varint(body, 0)
    if key >> 3 == 3:
        return "chunk"
    if key >> 3 != 4:
        return f"field {key >> 3}"
    length, i = read_varint(body, i)
    error = body[i : i + length]
    key, j = read_varint(error, 0)
    if key >> 3 != 1:
        return "error without a code"
    n, j = read_varint(error, j)
    return error[j : j + n].decode()


class Peer(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data = {}
        self.resets = set()
        self.ended = set()
        self.closed = asyncio.Event()
        self.hello_done = asyncio.Event()
        self.hello_stream = None

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
            if event.end_stream:
                self.ended.add(event.stream_id)
            if event.stream_id == self.hello_stream and event.end_stream:
                self.hello_done.set()
        elif isinstance(event, StreamReset):
            self.resets.add(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self.closed.set()
            self.hello_done.set()

    async def say_hello(self):
        self.hello_stream = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(self.hello_stream, hello(), end_stream=True)
        self.transmit()
        await asyncio.wait_for(self.hello_done.wait(), 10)
        return not self.closed.is_set() and bool(self.data.get(self.hello_stream))

    def open(self, payload, end):
        sid = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(sid, payload, end_stream=end)
        return sid


def configuration(cert, key, **limits):
    c = QuicConfiguration(is_client=True, alpn_protocols=["zest/1"], **limits)
    c.verify_mode = ssl.CERT_NONE
    c.load_cert_chain(cert, key)
    return c


async def dial(host, port, config, body):
    try:
        async with connect(host, port, configuration=config, create_protocol=Peer) as p:
            return await body(p)
    except (ConnectionError, asyncio.TimeoutError, OSError) as e:
        return {"error": type(e).__name__}


async def memory(host, port, config, seconds):
    async def one(p):
        if not await p.say_hello():
            return {"admitted": False}
        for i in range(63):
            claim = (4 << 20) if i % 2 == 0 else 16_000
            p.open(struct.pack(">I", claim) + b"\0" * (claim - 1), end=False)
        p.transmit()
        await asyncio.sleep(seconds)
        return {"admitted": True, "closed": p.closed.is_set()}

    return await asyncio.gather(*(dial(host, port, config, one) for _ in range(2)))


async def slots(host, port, config, file_hash, chunks, seconds):
    async def one(p):
        if not await p.say_hello():
            return {"admitted": False}
        streams = [p.open(get_request(file_hash, 0, chunks), end=True) for _ in range(60)]
        p.transmit()
        # Freeze: nothing is read and nothing acknowledged, as a peer that stopped reading.
        time.sleep(seconds)
        await asyncio.sleep(3)
        busy = sum(1 for s in streams if b"busy" in p.data.get(s, b"")[:200])
        return {
            "admitted": True,
            "busy": busy,
            "reset": sum(1 for s in streams if s in p.resets),
            "closed": p.closed.is_set(),
        }

    return await dial(host, port, config, one)


async def ask(host, port, config, files):
    async def one(p):
        if not await p.say_hello():
            return {"admitted": False}
        streams = [p.open(get_request(f, 0, 1), end=True) for f in files]
        p.transmit()
        for _ in range(100):
            if all(s in p.ended or s in p.resets for s in streams):
                break
            await asyncio.sleep(0.1)
        return {"admitted": True, "answers": [classify(p.data.get(s, b"")) for s in streams]}

    return await dial(host, port, config, one)


async def flood(host, port, config, n, seconds):
    async def one(p):
        admitted = await p.say_hello()
        if admitted:
            await asyncio.sleep(seconds)
        return {"admitted": admitted, "closed": p.closed.is_set()}

    results = await asyncio.gather(*(dial(host, port, config, one) for _ in range(n)))
    return {
        "dialled": n,
        "admitted": sum(1 for r in results if r.get("admitted")),
        "closed_later": sum(1 for r in results if r.get("admitted") and r.get("closed")),
    }


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with tempfile.TemporaryDirectory() as d:
        cert, key = certificate(d)
        if mode == "memory":
            out = asyncio.run(memory(host, port, configuration(cert, key), float(sys.argv[4])))
        elif mode == "slots":
            # Small windows: a frozen reader blocks the server's writes within a few frames.
            config = configuration(cert, key, max_data=256 << 10, max_stream_data=64 << 10)
            out = asyncio.run(
                slots(host, port, config, bytes.fromhex(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
            )
        elif mode == "ask":
            files = [bytes.fromhex(h) for h in sys.argv[4:]]
            out = asyncio.run(ask(host, port, configuration(cert, key), files))
        elif mode == "flood":
            out = asyncio.run(flood(host, port, configuration(cert, key), int(sys.argv[4]), float(sys.argv[5])))
        else:
            raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
