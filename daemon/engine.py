"""One inference wave: gather the streams' state, run the ONNX step, scatter the new state back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from daemon.errors import ModelError
from daemon.model_file import BASELINE_INPUT, ModelInfo, read_model
from daemon.state_table import FloatArray, IntArray, SlotMap, StateTable


@dataclass(frozen=True)
class WaveResult:
    slots: IntArray  # [B] the streams' slots in the state table
    score: FloatArray  # [B]
    contrib: FloatArray  # [B, F]
    congestion: FloatArray | None  # [B, Q] the congestion head's quantile forecasts, raw units
    fault: FloatArray | None  # [B] the fault head's probability of a fault within its horizon
    diverged: npt.NDArray[np.bool_]  # [B] rows whose score or state went non-finite; their state was reset
    hold: FloatArray | None = None  # [B] a peak-gated model's score before the gate

    @classmethod
    def of(
        cls, slots: IntArray, outputs: dict[str, FloatArray], diverged: npt.NDArray[np.bool_]
    ) -> WaveResult:
        """From the step's outputs by name (the heads' only when the model has them)."""
        return cls(
            slots,
            outputs["score"],
            outputs["contrib"],
            outputs.get("congestion"),
            outputs.get("fault"),
            diverged,
            outputs.get("hold_score"),
        )


@dataclass(frozen=True)
class Reloaded:
    """A new model version took over; streams kept their state, or ``streams_reset`` restart cold."""

    kept_state: bool
    streams_reset: int


class StateStore(Protocol):
    """What the engine needs of a state table; ``StateTable`` (host) and ``DeviceStateTable`` provide it."""

    device: str
    width: int
    slots: SlotMap

    @property
    def nbytes(self) -> int: ...

    def assign(self, streams: list[str]) -> IntArray: ...

    def gather(self, slots: IntArray) -> FloatArray: ...

    def scatter(self, slots: IntArray, state: FloatArray) -> None: ...

    def reshape(self, width: int) -> None: ...

    def evict(self, streams: list[str]) -> None: ...


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    @property
    def table(self) -> StateStore: ...

    def reload(self, path: Path) -> Reloaded | None: ...

    def step(
        self, streams: list[str], x: FloatArray, reset: npt.NDArray[np.bool_], ts: npt.NDArray[np.float64]
    ) -> WaveResult: ...


def state_layout(info: ModelInfo) -> tuple[object, ...]:
    """What must match for a stream's state to mean the same thing under another model version."""
    meta = info.metadata
    return (
        info.state_width,
        meta.get("cell"),
        meta.get("hidden"),
        meta.get("layers"),
        info.features,
        str(meta.get("state_layout")),
    )


def fixed_inputs(info: ModelInfo, baseline: int | None) -> dict[str, np.ndarray]:
    """Inputs that are the same for every wave: the baseline length (configured, else the trained one)."""
    if info.baseline_input:
        trained = int(info.metadata.get("baseline_readings", 0))
        return {BASELINE_INPUT: np.array([trained if baseline is None else baseline], dtype=np.float32)}
    if baseline is not None:
        raise ModelError(
            f"model {info.path}: models[].baseline_readings is set, but this model has no "
            f"'{BASELINE_INPUT}' input; re-export it with this faultcast version or unset the key"
        )
    return {}


def session_for(raw: bytes, providers: list[str], path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(raw, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types, not exported for typing
        raise ModelError(f"model {path}: onnxruntime cannot load it ({exc}); re-export it") from exc


def output_shapes(info: ModelInfo, n: int, width: int) -> dict[str, tuple[int, ...]]:
    """The outputs one wave asks for and their shapes, for ``n`` streams."""
    shapes: dict[str, tuple[int, ...]] = {
        "score": (n,),
        "contrib": (n, len(info.features)),
        "next_state": (n, width),
    }
    if info.congestion is not None:
        shapes["congestion"] = (n, len(info.congestion.quantiles))
    if info.fault_head:
        shapes["fault"] = (n,)
    if info.hold_score:
        shapes["hold_score"] = (n,)
    return shapes


def diverged_rows(outputs: dict[str, np.ndarray]) -> npt.NDArray[np.bool_]:
    """Rows where any output is NaN or infinite; one sum per row finds them (NaN and inf propagate).

    ``einsum`` sums a row 3-4x faster than ``sum(axis=1)``, on the calling thread: a product with a vector
    of ones would be faster still, but BLAS threads left spinning after it starve onnxruntime's (on two
    cores the engine lost a third of its speed). The channel shares are left out: they come from the
    same errors as the score."""
    total: np.ndarray | None = None
    with np.errstate(invalid="ignore", over="ignore"):  # what it looks for, not worth a warning
        for name, values in outputs.items():
            if name == "contrib":
                continue
            rows = np.einsum("ij->i", values) if values.ndim == 2 else values
            total = rows if total is None else total + rows
    assert total is not None
    finite: npt.NDArray[np.bool_] = np.isfinite(total)
    return ~finite


class ModelSession:
    """A model and its onnxruntime session, with hot reload: what every engine shares."""

    table: StateStore

    def __init__(self, path: Path, providers: list[str], baseline: int | None) -> None:
        raw, self.info = read_model(path)
        self.baseline = baseline
        self._providers = providers
        self._session = session_for(raw, providers, path)
        self._prepare(self.info)

    def _prepare(self, info: ModelInfo) -> None:
        """Derives what each wave feeds or asks for from ``info``; on load, and before a reload swaps."""

    def reload(self, path: Path) -> Reloaded | None:
        """Swaps in the model at ``path``; None if its bytes did not change.

        Streams keep their state when the new model's state layout equals the old one; otherwise
        every live stream restarts cold (it keeps its slot and its last timestamp).
        """
        raw, info = read_model(path)
        if info.sha256 == self.info.sha256:
            return None
        session = session_for(raw, self._providers, path)
        same_layout = state_layout(info) == state_layout(self.info)
        self._prepare(info)
        self._session, self.info = session, info
        if same_layout:
            return Reloaded(kept_state=True, streams_reset=0)
        self.table.reshape(info.state_width)
        return Reloaded(kept_state=False, streams_reset=len(self.table.slots))


class HostEngine(ModelSession):
    """CPU engine: state in a numpy table, plain ``InferenceSession.run``.

    (Binding reused host buffers with IOBinding was measured too: no faster on CPU, bench/step_engine.py.)
    """

    table: StateTable

    def __init__(self, path: Path, initial_capacity: int, baseline: int | None = None) -> None:
        super().__init__(path, ["CPUExecutionProvider"], baseline)
        self.table = StateTable(self.info.state_width, initial_capacity)

    def _prepare(self, info: ModelInfo) -> None:
        self._fixed = fixed_inputs(info, self.baseline)
        self._names = list(output_shapes(info, 0, 0))

    def step(
        self, streams: list[str], x: FloatArray, reset: npt.NDArray[np.bool_], ts: npt.NDArray[np.float64]
    ) -> WaveResult:
        """Advances each of ``streams`` (distinct) by one reading taken at ``ts``; ``reset`` rows start cold.

        ``ts`` reaches the model only if it has clock inputs."""
        slots = self.table.assign(streams)
        run = self.table.run_of(slots)
        # A run of rows is read in place (a view); the step's output never aliases it.
        state = self.table.view(run) if run is not None else self.table.gather(slots)
        if reset.any():
            state[reset] = 0.0
        feed = {"x": x, "state": state, **self._fixed}
        if self.info.clock:
            feed["ts"] = ts
        outputs = dict(zip(self._names, self._session.run(self._names, feed), strict=True))
        # Extreme inputs can overflow the arithmetic; a NaN kept in the state would poison every later step.
        diverged = diverged_rows(outputs)
        next_state = outputs["next_state"]
        if diverged.any():
            next_state[diverged] = 0.0
        if run is not None:
            state[:] = next_state
        else:
            self.table.scatter(slots, next_state)
        return WaveResult.of(slots, outputs, diverged)
