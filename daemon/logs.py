"""One line per event: key=value (default) or JSON, with stream, topic, partition, offset where known."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self._json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info).replace("\n", " | ")
        if self._json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={_kv(v)}" for k, v in fields.items())


def _kv(value: Any) -> str:
    text = str(value)
    # Quote anything that could split or forge a line (spaces, '=', quotes, control characters).
    plain = text and text.isprintable() and not any(c in text for c in ' ="')
    return text if plain else json.dumps(text)


# What kafka-python says only at INFO, though it means readings were never scored.
_SKIPPED = "Fetch offset %s is out of range for topic-partition %s"


class _SkippedRecords(logging.Filter):
    """Passes what kafka-python's fetcher logs at ``level`` or above, and its out-of-range line as a
    warning: records the group had not read yet were deleted (retention, or deleteRecords), and it
    jumps over them by ``kafka.auto_offset_reset``, a loss the operator must hear of."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _SKIPPED:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = (
                "readings skipped or read again: " + _SKIPPED + ": the group's offset is before the "
                "oldest record left (retention deleted records it had not read: they are never scored) "
                "or past the newest (the topic was recreated or truncated); the consumer goes on where "
                "kafka.auto_offset_reset says"
            )
        return record.levelno >= self.level


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_kafka(max(logging.WARNING, logging.getLevelName(level)))


def quiet_kafka(level: int) -> None:
    """kafka-python logs at ``level`` and above only, but for its line on skipped records (a warning)."""
    logging.getLogger("kafka").setLevel(level)
    fetcher = logging.getLogger("kafka.consumer.fetcher")
    fetcher.setLevel(logging.INFO)  # for the one INFO line _SkippedRecords turns into a warning
    fetcher.filters[:] = [_SkippedRecords(level)]
