from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from daemon import systemd
from daemon.systemd import Notifier


def test_the_watchdog_is_fed_at_most_once_a_second_whatever_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A longer throttle (half of a 60 s WatchdogSec) let a turn that began just before a ping was due,
    then blocked in a 30 s flush and a 10 s commit, outlast the timeout."""
    now = [100.0]
    monkeypatch.setattr(systemd.time, "monotonic", lambda: now[0])
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(60_000_000)})
        pings = []
        for step in (0.0, 0.5, 0.75, 1.0, 30.0):
            now[0] += step
            notifier.watchdog()
            with contextlib.suppress(BlockingIOError):
                pings.append((now[0], receiver.recv(64)))
    assert pings == [(t, b"WATCHDOG=1") for t in (100.0, 101.25, 102.25, 132.25)]
