"""systemd's notify protocol (READY, WATCHDOG, STOPPING) over $NOTIFY_SOCKET; a no-op outside systemd."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' and addressed with a leading NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        # Once a second at most (half the timeout if that is shorter): the loop also pings before each
        # call that may block for long (a flush, a commit), and a ping held back by a longer throttle
        # would leave a turn starting just before it the whole timeout less that throttle.
        self._watchdog_every = min(1.0, watchdog_usec / 2e6) if watchdog_usec else None
        self._last_ping = float("-inf")

    def notify(self, message: str) -> None:
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode("utf-8"), self._address)

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Called from the processing loop itself, so a hung step stops the heartbeat."""
        if self._watchdog_every is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self._watchdog_every:
            self.notify("WATCHDOG=1")
            self._last_ping = now
