from __future__ import annotations

from daemon.dead_letter import DETAIL_CHARS, DeadLetter, dead_letter
from daemon.processor import RawRecord
from daemon.records import Rejection, Source

SOURCE = Source("readings", 3, 41)
LIMIT = 1_048_576  # kafka-python's max_request_size


def _letter(record: RawRecord, detail: str = "bad", max_bytes: int = LIMIT) -> DeadLetter:
    letter = dead_letter(record, Rejection("malformed_json", detail, SOURCE), max_bytes)
    size = len(letter.key or b"") + len(letter.value) + sum(len(k) + len(v) for k, v in letter.headers)
    assert size <= max_bytes
    return letter


def _headers(letter: DeadLetter) -> dict[str, bytes]:
    return dict(letter.headers)


def test_the_original_record_travels_with_connect_style_error_headers() -> None:
    letter = _letter(RawRecord(b"m-1", b"{oops", SOURCE, (("trace", b"t-1"),)))
    assert (letter.key, letter.value) == (b"m-1", b"{oops")
    assert letter.headers == [
        ("trace", b"t-1"),
        ("errors.reason", b"malformed_json"),
        ("errors.exception.message", b"bad"),
        ("errors.topic", b"readings"),
        ("errors.partition", b"3"),
        ("errors.offset", b"41"),
        ("errors.stage", b"decode"),
    ]


def test_what_kafka_would_refuse_is_made_sendable_and_said_so() -> None:
    # Kafka takes neither a record with no key and no value nor a null header value from a producer, though
    # other clients write both; refused, the daemon would stop on the same record after every restart.
    letter = _letter(RawRecord(None, None, SOURCE, (("trace", None), ("errors.reason", b"forged"))))
    headers = _headers(letter)
    assert (letter.key, letter.value) == (None, b"")
    assert headers["errors.original.value"] == b"null"
    assert headers["trace"] == b""
    assert headers["errors.original.null_headers"] == b"trace"
    # a header the record came with cannot pass for ours
    assert [v for k, v in letter.headers if k == "errors.reason"] == [b"malformed_json"]


def test_what_does_not_fit_the_producer_limit_is_left_out_in_order() -> None:
    big = b"x" * 2000
    letter = _letter(RawRecord(b"m-1", big, SOURCE, (("h", b"y" * 500),)), max_bytes=2000)
    assert letter.value == b""
    assert _headers(letter)["errors.original.value"] == b"left out: 2000 bytes"
    assert _headers(letter)["h"] == b"y" * 500, "the headers still fit once the value is left out"

    letter = _letter(RawRecord(b"m-1", big, SOURCE, (("h", big),)), max_bytes=2000)
    assert "h" not in _headers(letter)
    assert _headers(letter)["errors.original.headers"] == b"left out: 1 headers, 2009 bytes"
    assert letter.key == b"m-1"

    letter = _letter(RawRecord(big, big, SOURCE), max_bytes=2000)
    assert letter.key is None
    assert _headers(letter)["errors.original.key"] == b"left out: 2000 bytes"


def test_the_error_message_is_cut_to_a_readable_length() -> None:
    letter = _letter(RawRecord(b"m-1", b"{", SOURCE), detail="z" * 10_000)
    assert _headers(letter)["errors.exception.message"] == b"z" * DETAIL_CHARS


def test_the_names_of_many_null_headers_are_cut_too() -> None:
    headers = tuple((f"h{i}", None) for i in range(60_000))
    letter = _letter(RawRecord(b"m-1", b"{", SOURCE, headers))
    named = _headers(letter)["errors.original.null_headers"]
    assert named.startswith(b"h0,h1,") and named.endswith(b"... (60000 in all)")
    assert len(named) < DETAIL_CHARS + 40
