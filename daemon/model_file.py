"""Reads a step model's ONNX file and checks it against the step-model contract (docs/model-format.md)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from daemon.errors import ModelError

FORMAT_VERSION = 1
METADATA_KEY = "faultcast"
INPUTS = ("x", "state")
# Optional scalar input: how many readings form each stream's baseline (default: the trained value).
BASELINE_INPUT = "baseline_readings"
REQUIRED_OUTPUTS = ("score", "contrib", "next_state")


@dataclass(frozen=True)
class CongestionInfo:
    """The congestion head: quantile forecasts of the load channel ``horizon_s`` ahead."""

    channel: int  # index into the model's features
    quantiles: tuple[float, ...]
    warn: int  # index of the quantile whose forecast is compared with the limit
    limit: float  # raw units of the load channel
    horizon_s: float


@dataclass(frozen=True)
class ModelInfo:
    """What the daemon needs to know about one step model, from its metadata."""

    name: str
    version: str
    features: tuple[str, ...]
    state_width: int
    thresholds: dict[str, float]
    outputs: tuple[str, ...]
    sha256: str
    path: Path
    metadata: dict[str, Any]
    clock: bool = False  # the step takes each reading's timestamp as input ``ts``
    congestion: CongestionInfo | None = None
    fault_head: bool = False  # fault alerts follow the model's fault probability, not its anomaly score
    baseline_input: bool = False  # the baseline's length can be set per model in the config
    hold_score: bool = False  # a peak-gated score: fault alerts stay up while ``hold_score`` stays high
    reading_step_s: float | None = None  # the usual time between the readings it was trained on


def read_model(path: Path) -> tuple[bytes, ModelInfo]:
    """The model's bytes and its checked metadata; any breach of the contract raises ModelError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"model {path}: cannot read it ({exc.strerror}); run `faultcast train` or fix models[].path"
        ) from exc
    try:
        proto = onnx.load_from_string(raw)
    except Exception as exc:  # onnx raises DecodeError and others from protobuf
        raise ModelError(f"model {path}: not an ONNX file ({exc})") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ModelError(f"model {path}: no '{METADATA_KEY}' metadata; export it with `faultcast train`")
    try:
        meta = json.loads(props[METADATA_KEY])
        info = _info(meta, proto, raw, path)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(
            f"model {path}: unreadable '{METADATA_KEY}' metadata ({exc!r}); re-export it"
        ) from exc
    return raw, info


def _info(meta: dict[str, Any], proto: onnx.ModelProto, raw: bytes, path: Path) -> ModelInfo:
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"model {path}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}; "
            "re-export it with this faultcast version"
        )
    inputs = tuple(i.name for i in proto.graph.input)
    outputs = tuple(o.name for o in proto.graph.output)
    missing = [n for n in INPUTS if n not in inputs] + [n for n in REQUIRED_OUTPUTS if n not in outputs]
    if missing:
        raise ModelError(f"model {path}: graph lacks {', '.join(missing)}; it is not a faultcast step model")
    congestion = None
    if "congestion" in outputs:
        head = meta["congestion"]
        congestion = CongestionInfo(
            channel=list(meta["features"]).index(head["channel"]),
            quantiles=tuple(float(q) for q in head["quantiles"]),
            warn=int(head["warn_quantile"]),
            limit=float(head["limit"]),
            horizon_s=float(head["horizon_steps"]) * float(head["step_s"]),
        )
        if not 0 <= congestion.warn < len(congestion.quantiles):
            raise ValueError(f"congestion.warn_quantile {congestion.warn} is not a quantile's index")
    return ModelInfo(
        name=str(meta["name"]),
        version=str(meta["version"]),
        features=tuple(meta["features"]),
        state_width=int(meta["state_width"]),
        thresholds={k: float(v["threshold"]) for k, v in meta.get("thresholds", {}).items()},
        outputs=outputs,
        sha256=hashlib.sha256(raw).hexdigest(),
        path=path,
        metadata=meta,
        clock="ts" in inputs,
        congestion=congestion,
        fault_head="fault" in outputs,
        baseline_input=BASELINE_INPUT in inputs,
        hold_score="hold_score" in outputs,
        reading_step_s=_reading_step(meta.get("training")),
    )


def _reading_step(training: Any) -> float | None:
    """The trained step, where the metadata has a usable one. It only informs a counter, so a file
    without one (older, or made by hand) still loads, and is never counted."""
    step = training.get("reading_step_s") if isinstance(training, dict) else None
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or step <= 0:
        return None
    return float(step)
