"""Dataset specs: frozen dataclasses, read from YAML, saying how a CSV layout maps onto labelled streams."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from daemon.config_parse import build
from daemon.errors import ConfigError

TEMPLATE_FIELDS = ("stem", "file", "category", "path", "key")


class SpecError(ConfigError, ValueError):
    """A dataset spec (or the data it points at) is invalid; the message names the key or file."""


@dataclass(frozen=True)
class TimestampSpec:
    """The time column; ``format`` is a strftime pattern, ``iso`` or ``epoch`` (naive times are UTC)."""

    column: str = "timestamp"
    format: str = "iso"

    def __post_init__(self) -> None:
        if self.format not in ("iso", "epoch") and "%" not in self.format:
            raise SpecError(
                f"timestamp.format {self.format!r}: give iso, epoch or a strftime pattern such as "
                "'%Y-%m-%d %H:%M:%S'"
            )

    def parser(self) -> Callable[[str], float | None]:
        """Text to epoch seconds, None when the text does not parse."""
        return partial(parse_time, fmt=self.format)


@dataclass(frozen=True)
class StreamByColumn:
    """Rows are grouped into streams by the value of ``column``."""

    column: str


@dataclass(frozen=True)
class LabelColumns:
    """Per-row label columns (a row is labelled when the value is a non-zero number)."""

    anomaly: str | None = None
    changepoint: str | None = None


@dataclass(frozen=True)
class WindowsSpec:
    """NAB ``combined_windows.json``-style labels: ``{key: [[start, end], ...]}``, path relative to root."""

    path: str
    key: str = "{category}/{file}"

    def __post_init__(self) -> None:
        _check_template("key", self.key)


@dataclass(frozen=True)
class GapSpec:
    """A step longer than ``max_gap_s`` is a gap; ``split`` cuts the stream into segments there."""

    max_gap_s: float | None = None
    policy: Literal["keep", "split"] = "keep"

    def __post_init__(self) -> None:
        if self.max_gap_s is not None and self.max_gap_s <= 0:
            raise ValueError(f"max_gap_s: must be > 0, got {self.max_gap_s}")
        if self.policy == "split" and self.max_gap_s is None:
            raise ValueError("policy: 'split' needs max_gap_s")


@dataclass(frozen=True)
class ResampleSpec:
    """Readings put on a grid of ``step_s`` seconds: each step's readings become one, at the step's start
    (``mean`` of each channel, or the ``last`` one), a label set if any of them has it. For recordings
    finer or more irregular than the live stream the model will score: resample to the live step."""

    step_s: float | None = None
    how: Literal["mean", "last"] | None = None  # None: mean

    def __post_init__(self) -> None:
        if self.step_s is not None and not (math.isfinite(self.step_s) and self.step_s >= 1e-6):
            raise ValueError(f"step_s: must be a number of seconds, at least 1e-6, got {self.step_s}")
        if self.how is not None and self.step_s is None:
            raise ValueError(f"how: {self.how!r} needs step_s, the grid's step")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read a data set: which files under the root, their columns, streams, labels and clean-up."""

    files: tuple[str, ...]
    channels: tuple[str | dict[str, str], ...]
    name: str = ""
    description: str = ""
    separator: str = ","
    timestamp: TimestampSpec = field(default_factory=TimestampSpec)
    stream: Literal["file"] | StreamByColumn = "file"
    stream_name: str | None = None
    label_columns: LabelColumns | None = None
    windows: WindowsSpec | None = None
    resample: ResampleSpec = field(default_factory=ResampleSpec)
    gaps: GapSpec = field(default_factory=GapSpec)
    duplicates: Literal["drop"] = "drop"

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("files: list at least one glob pattern")
        if not self.channels:
            raise ValueError("channels: list at least one column")
        for i, channel in enumerate(self.channels):
            if isinstance(channel, dict) and len(channel) != 1:
                raise ValueError(f"channels[{i}]: a rename is one `column: name` pair, got {channel!r}")
        if len(set(self.channel_names)) != len(self.channel_names):
            raise ValueError(f"channels: names repeat: {list(self.channel_names)}")
        if len(self.separator) != 1:
            raise ValueError(f"separator: must be one character, got {self.separator!r}")
        if self.label_columns is not None and self.windows is not None:
            raise ValueError("label_columns and windows: give one kind of labels, not both")
        if self.stream_name is not None:
            _check_template("stream_name", self.stream_name)

    def paths(self, root: Path) -> list[Path]:
        """Files under ``root`` that ``files`` match, sorted per pattern; a pattern matching none raises."""
        if not root.is_dir():
            raise SpecError(f"dataset {self.name}: data root {root} is not a folder")
        found: dict[Path, None] = {}
        for pattern in self.files:
            if Path(pattern).is_absolute():
                raise SpecError(
                    f"dataset {self.name}: files pattern {pattern!r} must be relative to the root"
                )
            matches = sorted(p for p in root.glob(pattern) if p.is_file())
            if not matches:
                raise SpecError(
                    f"dataset {self.name}: files pattern {pattern!r} matches nothing under {root}"
                )
            found.update(dict.fromkeys(matches))
        return list(found)

    @property
    def channel_columns(self) -> tuple[str, ...]:
        """The CSV columns read as channels, in order."""
        return tuple(next(iter(c)) if isinstance(c, dict) else c for c in self.channels)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The channel names the series carry (after renames), in order."""
        return tuple(next(iter(c.values())) if isinstance(c, dict) else c for c in self.channels)

    @property
    def name_template(self) -> str:
        """The stream-name template: ``stream_name``, else ``{stem}`` per file or ``{key}`` per column."""
        if self.stream_name is not None:
            return self.stream_name
        return "{stem}" if self.stream == "file" else "{key}"


def parse_time(text: str, fmt: str = "iso") -> float | None:
    """Epoch seconds from ``text`` in ``fmt`` (``iso``, ``epoch`` or strftime; naive is UTC), else None."""
    text = text.strip()
    try:
        if fmt == "epoch":
            value = float(text)
        else:
            moment = datetime.fromisoformat(text) if fmt == "iso" else datetime.strptime(text, fmt)
            value = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def parse_spec(text: str, origin: str = "<string>") -> DatasetSpec:
    """A spec from YAML text; every problem raises SpecError naming ``origin`` and the key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"dataset spec {origin}: not valid YAML: {exc}") from exc
    try:
        spec = build(DatasetSpec, data)
    except ConfigError as exc:
        raise SpecError(f"dataset spec {origin}: {exc}") from exc
    if not spec.name:
        spec = replace(spec, name=Path(origin).stem)
    return spec


def shipped_specs() -> tuple[str, ...]:
    """Names of the specs shipped in ``train/specs/`` (usable with ``load_spec``)."""
    folder = resources.files("train") / "specs"
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def load_spec(source: str | Path) -> DatasetSpec:
    """A spec from a YAML file path, or by the name of a shipped spec (``nab_realKnownCause``, ``skab``)."""
    if isinstance(source, str) and source in shipped_specs():
        text = (resources.files("train") / "specs" / f"{source}.yaml").read_text(encoding="utf-8")
        return parse_spec(text, f"{source}.yaml")
    path = Path(source)
    if not path.is_file():
        known = ", ".join(shipped_specs())
        raise SpecError(f"dataset spec {source}: no such file or shipped spec (shipped: {known})")
    return parse_spec(path.read_text(encoding="utf-8"), str(path))


def _check_template(key: str, template: str) -> None:
    try:
        template.format(**dict.fromkeys(TEMPLATE_FIELDS, "x"))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{key}: {template!r} may use only {{{'}, {'.join(TEMPLATE_FIELDS)}}}") from exc
