"""The Socket Mode side of the stand-in: a minimal WebSocket server (RFC 6455) on 127.0.0.1 that
says hello, pushes envelopes to the connected app and records the app's acks."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import uuid
from typing import Any

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    b1, b2 = _recv_exact(sock, 2)
    opcode, masked, n = b1 & 0x0F, b2 & 0x80, b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _recv_exact(sock, 8))[0]
    mask = _recv_exact(sock, 4) if masked else b"\0\0\0\0"
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(_recv_exact(sock, n)))
    return opcode, data


class SocketModeStub:
    def __init__(self) -> None:
        self.acks: dict[str, dict[str, Any]] = {}
        self.handshakes = 0  # connections the app has opened, reconnects included
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._listener.getsockname()[1]}/link/?ticket=stub"

    @property
    def connected(self) -> int:
        with self._lock:
            return len(self._clients)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                request += _recv_exact(conn, 1)
            headers = {}
            for line in request.decode().split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + _GUID).encode()).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn.sendall(_frame(0x1, json.dumps({"type": "hello", "num_connections": 1}).encode()))
            with self._lock:
                self._clients.append(conn)
                self.handshakes += 1
            while True:
                opcode, data = _read_frame(conn)
                if opcode == 0x9:
                    conn.sendall(_frame(0xA, data))
                elif opcode == 0x8:
                    break
                elif opcode == 0x1:
                    msg = json.loads(data)
                    if "envelope_id" in msg:
                        with self._lock:
                            self.acks[msg["envelope_id"]] = msg
        except (ConnectionError, OSError, ValueError, KeyError):
            pass
        finally:
            with self._lock:
                if conn in self._clients:
                    self._clients.remove(conn)
            conn.close()

    def push(self, kind: str, payload: dict[str, Any]) -> str:
        """Send an envelope (kind: interactive, slash_commands, events_api) to every connected app."""
        envelope_id = str(uuid.uuid4())
        frame = _frame(0x1, json.dumps({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                        "accepts_response_payload": kind != "events_api"}).encode())
        with self._lock:
            for c in self._clients:
                c.sendall(frame)
        return envelope_id

    def drop(self) -> None:
        """Cut every connection without a close frame, as a network blip or a Slack restart does."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for c in self._clients:
                c.close()
