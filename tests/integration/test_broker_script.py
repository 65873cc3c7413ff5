"""The project's broker script: a second broker, started and stopped, leaves no process and no port."""

from __future__ import annotations

import runpy
import subprocess
from pathlib import Path

import pytest

from tests.conftest import broker_env
from tests.support import BROKER, free_port, port_open

broker_count = runpy.run_path(str(BROKER.parent / "ready.py"))["broker_count"]

pytestmark = pytest.mark.integration


def _kafka_pids(state: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and str(state).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_stop_leaves_no_process_and_no_port(tmp_path: Path) -> None:
    port = free_port()
    env = broker_env(port, tmp_path)
    controller_port = int(env["KAFKA_CONTROLLER_PORT"])
    subprocess.run([str(BROKER), "start"], env=env, check=True)
    try:
        assert broker_count("127.0.0.1", port) == 1
        assert len(_kafka_pids(tmp_path)) == 1
        status = subprocess.run([str(BROKER), "status"], env=env, capture_output=True, text=True, check=False)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        subprocess.run([str(BROKER), "stop"], env=env, check=True)
    assert _kafka_pids(tmp_path) == []
    assert not port_open(port) and not port_open(controller_port)
    status = subprocess.run([str(BROKER), "status"], env=env, capture_output=True, text=True, check=False)
    assert status.returncode == 3 and status.stdout.strip() == "stopped"
