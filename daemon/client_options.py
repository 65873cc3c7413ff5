"""The kafka-python options config.yaml may pass through (``kafka.client``): names, value types and the
values some of them are limited to, checked at start instead of by the clients mid-run."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from daemon.config_parse import FieldError

# faultcast sets these itself: at-least-once delivery and the partition assignment depend on them.
RESERVED = frozenset(
    {
        "bootstrap_servers", "group_id", "client_id", "enable_auto_commit", "key_deserializer",
        "value_deserializer", "key_serializer", "value_serializer", "acks", "auto_offset_reset",
        "max_poll_records", "retries", "enable_idempotence", "max_in_flight_requests_per_connection",
        "delivery_timeout_ms", "transactional_id",
    }
)  # fmt: skip
_DEFAULTS: dict[str, Any] = {
    **KafkaAdminClient.DEFAULT_CONFIG,
    **KafkaProducer.DEFAULT_CONFIG,
    **KafkaConsumer.DEFAULT_CONFIG,
}
# Options whose default is None, by the type they take.
_TYPES: dict[str, type] = {
    "group_instance_id": str, "receive_buffer_bytes": int, "send_buffer_bytes": int, "ssl_cafile": str,
    "ssl_certfile": str, "ssl_keyfile": str, "ssl_crlfile": str, "ssl_password": str, "ssl_ciphers": str,
    "sasl_mechanism": str, "sasl_plain_username": str, "sasl_plain_password": str,
    "sasl_kerberos_name": str, "sasl_kerberos_domain_name": str, "proxy_url": str, "socks5_proxy": str,
    "compression_type": str,
}  # fmt: skip
# A value outside these is not an error to kafka-python for every option: a misspelt security_protocol
# ("SASL_SSLX") connects in plain text.
CHOICES: dict[str, tuple[str, ...]] = {
    "security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER", "AWS_MSK_IAM"),
    "compression_type": ("gzip", "snappy", "lz4", "zstd"),
    "isolation_level": ("read_uncommitted", "read_committed"),
    "client_dns_lookup": ("use_all_dns_ips", "resolve_canonical_bootstrap_servers_only"),
}
_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", list: "a list"}


def _expected(name: str) -> type | None:
    """The type an option takes; None where it takes a Python object (a class, a callable, an SSL context)
    that YAML cannot give."""
    if name in _TYPES:
        return _TYPES[name]
    default = _DEFAULTS[name]
    for kind in (bool, int, float, str):  # bool before int: True is an int too
        if isinstance(default, kind):
            return kind
    return None


def _matches(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_names(names: Iterable[str], key: str) -> None:
    """Raises FieldError naming the first option that faultcast owns or kafka-python does not know."""
    for name in names:
        where = f"{key}.{name}"
        if name in RESERVED:
            raise FieldError(where, f"is set by faultcast itself; remove it from kafka.{key}")
        if name not in _DEFAULTS:
            close = difflib.get_close_matches(name, sorted(_DEFAULTS), n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "see kafka-python's KafkaConsumer/KafkaProducer docs for names such as "
                "security_protocol, ssl_cafile"
            )
            raise FieldError(where, f"is not a kafka-python client option; {hint}")


def check_client(options: Mapping[str, Any]) -> None:
    """Raises FieldError naming the first option that is not one to pass through (see check_names), or has
    a value of the wrong type or outside its allowed values."""
    check_names(options, "client")
    for name, value in options.items():
        where = f"client.{name}"
        if value is None and _DEFAULTS[name] is None:
            continue  # kafka-python's own default
        if name == "api_version":
            ok = isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )
            if not ok:
                raise FieldError(where, f"must be a version such as [3, 9] or '3.9', not {value!r}")
            continue
        kind = _expected(name)
        if kind is None:
            raise FieldError(where, "takes a Python object, which config.yaml cannot give; leave it out")
        if not _matches(value, kind):
            raise FieldError(where, f"must be {_NAMES[kind]}, not {value!r}")
        allowed = CHOICES.get(name)
        if allowed is not None and value not in allowed:
            raise FieldError(where, f"must be one of {', '.join(allowed)}; got {value!r}")


def read_secrets(files: Mapping[str, str], base_dir: Path) -> dict[str, str]:
    """Each option's value read from its file (relative paths from ``base_dir``), the final newline
    dropped; FieldError names the option whose file cannot be read."""
    values: dict[str, str] = {}
    for name, file in files.items():
        path = base_dir / file
        try:
            values[name] = path.read_text(encoding="utf-8").removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise FieldError(
                f"client_secrets.{name}",
                f"cannot read {path} ({reason}); under systemd, load it with LoadCredential= and name "
                "/run/credentials/faultcast.service/<name> here (docs/operations.md#secrets)",
            ) from exc
    return values
