"""The dead-letter record for a rejected one: its key, value and headers as they came, plus Kafka
Connect-style ``errors.*`` headers, cut down where Kafka would refuse to take it as is."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.processor import RawRecord
from daemon.records import Rejection

# errors.exception.message: a channel's value is quoted in it, and may be as large as the record.
DETAIL_CHARS = 500
# What a record adds to its key, value and headers on the wire (lengths, offsets, attributes), and a
# record batch's own header: an upper bound, so that what is estimated to fit does.
_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k.encode()) + len(v) + 8 for k, v in headers)


def dead_letter(record: RawRecord, rejection: Rejection, max_bytes: int) -> DeadLetter:
    """The record to publish for ``rejection``, at most ``max_bytes`` (the producer's max_request_size).

    Kafka refuses a record with neither key nor value, a header whose value is null, and a record over
    the producer's limit, and each refusal would stop the daemon on the same record after every restart.
    So a null value is sent empty, null header values empty, and what does not fit (the value, then the
    original headers, then the key) is left out; ``errors.original.*`` headers say so. The ``errors.*``
    headers a record came with are dropped: a reader would take the first ``errors.reason`` as ours.
    """
    src = record.source
    errors = {
        "errors.reason": rejection.reason,
        "errors.exception.message": rejection.detail[:DETAIL_CHARS],
        "errors.topic": src.topic,
        "errors.partition": str(src.partition),
        "errors.offset": str(src.offset),
        "errors.stage": rejection.stage,
    }
    original = [(k, v) for k, v in record.headers if not k.startswith("errors.")]
    nulls = [k for k, v in original if v is None]
    if nulls:
        names = ",".join(nulls)
        cut = names[:DETAIL_CHARS] + (f"... ({len(nulls)} in all)" if len(names) > DETAIL_CHARS else "")
        errors["errors.original.null_headers"] = cut
    headers = [(k, v if v is not None else b"") for k, v in original]
    key, value = record.key, record.value
    if value is None:
        errors["errors.original.value"] = "null"
    budget = max_bytes - _OVERHEAD_BYTES - _size(None, None, [(k, v.encode()) for k, v in errors.items()])
    if _size(key, value, headers) > budget and value:
        errors["errors.original.value"] = f"left out: {len(value)} bytes"
        value = None
    if _size(key, value, headers) > budget and headers:
        errors["errors.original.headers"] = (
            f"left out: {len(headers)} headers, {_size(None, None, headers)} bytes"
        )
        headers = []
    if _size(key, value, headers) > budget and key:
        errors["errors.original.key"] = f"left out: {len(key)} bytes"
        key = None
    encoded = [(k, v.encode("utf-8")) for k, v in errors.items()]
    return DeadLetter(key, value or b"", [*headers, *encoded])
