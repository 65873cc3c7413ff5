"""Closing the producer after Kafka stopped answering ends cleanly, with no traceback at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import broker_env
from tests.support import BROKER, free_port

pytestmark = pytest.mark.integration

# One record acknowledged, then (once the parent has stopped the broker) one that never can be, then the
# daemon's close without a flush, as after an error. kafka-python's destructor runs at the child's exit.
CHILD = """
import sys
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from daemon.kafka_io import close_producer
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
admin.create_topics([NewTopic("close-test", 1, 1)])
admin.close()
producer = KafkaProducer(bootstrap_servers=sys.argv[1], acks="all")
producer.send("close-test", b"acked").get(timeout=60)
print("acked", flush=True)
sys.stdin.readline()
producer.send("close-test", b"never acknowledged")
close_producer(producer, 0)
print("closed", flush=True)
"""


def test_a_producer_closed_after_the_broker_went_away_exits_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = broker_env(port, tmp_path)
    subprocess.run([str(BROKER), "start"], env=env, check=True)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        acked = child.stdout.readline()
        assert acked == "acked\n", child.communicate(timeout=60)[1]
    finally:
        subprocess.run([str(BROKER), "stop"], env=env, check=True)
    out, err = child.communicate("go\n", timeout=60)
    assert child.returncode == 0, err
    assert out == "closed\n"
    assert "Traceback" not in err and "Exception ignored" not in err, err
