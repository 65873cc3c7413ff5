"""Builds frozen config dataclasses from parsed YAML, failing on unknown keys and wrong types."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from daemon.errors import ConfigError

T = TypeVar("T")


class FieldError(ValueError):
    """A dataclass's check of one of its fields failed: the message says what the value must be."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key} {message}")
        self.key, self.message = key, message


def field_error(exc: FieldError, path: str) -> ConfigError:
    """The ConfigError for a FieldError raised under the config key ``path``."""
    return ConfigError(f"{_where(_join(path, exc.key))}: {exc.message}")


def require(ok: bool, key: str, message: str) -> None:
    """Raises FieldError(key, message) unless ``ok``: for ``__post_init__`` checks."""
    if not ok:
        raise FieldError(key, message)


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Returns ``cls`` filled from ``data``; every problem raises ConfigError naming the key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(path)}: expected a mapping of keys, got {_show(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(fields))}"
        raise ConfigError(f"{_where(_join(path, str(key)))}: unknown key{hint}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name in data:
            values[name] = convert(hints[name], data[name], key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_where(key_path)}: required key is missing")
    try:
        return cls(**values)
    except FieldError as exc:  # __post_init__ checks of one field
        raise field_error(exc, path) from exc
    except ValueError as exc:  # __post_init__ cross-field checks
        raise ConfigError(f"{_where(path)}: {exc}") from exc


def convert(hint: Any, value: Any, path: str) -> Any:
    """Checks ``value`` against the type ``hint`` and converts lists to tuples and mappings to dataclasses."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return convert(option, value, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{_where(path)}: {_show(value)} fits none of {' | '.join(_name(o) for o in options)}"
        )
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{_where(path)}: {_show(value)} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{_where(path)}: expected a list, got {_show(value)}")
        item = get_args(hint)[0]
        return tuple(convert(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(path)}: expected a mapping, got {_show(value)}")
        key_hint, value_hint = get_args(hint)
        return {
            convert(key_hint, k, path): convert(value_hint, v, _join(path, str(k))) for k, v in value.items()
        }
    if dataclasses.is_dataclass(hint):
        return build(typing.cast(type[Any], hint), value, path)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{_where(path)}: expected a number, got {_show(value)}")
        if math.isnan(value):
            raise ConfigError(f"{_where(path)}: expected a number, got .nan")
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{_where(path)}: expected an integer, got {_show(value)}")
    if hint in (str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{_where(path)}: expected {_name(hint)}, got {_show(value)}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return f"config key '{path}'" if path else "config"


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
