"""Waits until a Kafka broker answers a Metadata request and lists itself; stdlib only."""

from __future__ import annotations

import socket
import struct
import sys
import time

_METADATA_API_KEY = 3
# Kafka 4 removed Metadata v0-v3 (KIP-896); v4 is the oldest version every 4.x broker still serves.
_METADATA_VERSION = 4


def _request(correlation_id: int) -> bytes:
    client_id = b"faultcast-ready"
    header = struct.pack(">hhih", _METADATA_API_KEY, _METADATA_VERSION, correlation_id, len(client_id))
    # topics = null (all topics), allow_auto_topic_creation = false
    body = struct.pack(">i?", -1, False)
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def broker_count(host: str, port: int, timeout: float = 2.0) -> int:
    """Number of brokers listed in a Metadata response from host:port."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_request(1))
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        body = _read_exact(sock, size)
    # response header: correlation_id; v4 body: throttle_time_ms, brokers array length
    correlation_id, _throttle, brokers = struct.unpack(">iii", body[:12])
    if correlation_id != 1:
        raise ConnectionError(f"unexpected correlation id {correlation_id}")
    return int(brokers)


def main() -> int:
    host, port, deadline_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + deadline_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        try:
            if broker_count(host, port) >= 1:
                return 0
            last_error = "metadata lists no broker yet"
        except (OSError, struct.error) as exc:
            last_error = str(exc)
        time.sleep(0.2)  # polling interval of a readiness wait, not synchronisation in a test
    print(f"broker {host}:{port} not ready after {deadline_s:.0f}s: {last_error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
