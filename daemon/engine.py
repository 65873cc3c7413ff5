"""One inference wave: gather the streams' state, run the ONNX step, scatter the new state back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from daemon.model_file import ModelInfo, read_model
from daemon.state_table import FloatArray, IntArray, SlotMap, StateTable


@dataclass(frozen=True)
class WaveResult:
    slots: IntArray  # [B] the streams' slots in the state table
    score: FloatArray  # [B]
    contrib: FloatArray  # [B, F]


class StateStore(Protocol):
    """What the engine needs of a state table; ``StateTable`` (host) and ``DeviceStateTable`` provide it."""

    device: str
    width: int
    slots: SlotMap

    @property
    def nbytes(self) -> int: ...

    def assign(self, streams: list[str]) -> IntArray: ...

    def evict(self, stream: str) -> None: ...


class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    @property
    def table(self) -> StateStore: ...

    def step(self, streams: list[str], x: FloatArray, reset: npt.NDArray[np.bool_]) -> WaveResult: ...


def session_for(raw: bytes, providers: list[str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(raw, sess_options=options, providers=providers)


class HostEngine:
    """CPU engine: state in a numpy table, plain ``InferenceSession.run``."""

    def __init__(self, path: Path, initial_capacity: int) -> None:
        raw, self.info = read_model(path)
        self._session = session_for(raw, ["CPUExecutionProvider"])
        self.table = StateTable(self.info.state_width, initial_capacity)

    def step(self, streams: list[str], x: FloatArray, reset: npt.NDArray[np.bool_]) -> WaveResult:
        """Advances each of ``streams`` (distinct) by one reading; rows of ``reset`` start cold."""
        slots = self.table.assign(streams)
        state = self.table.gather(slots)
        if reset.any():
            state[reset] = 0.0
        score, contrib, next_state = self._session.run(
            ["score", "contrib", "next_state"], {"x": x, "state": state}
        )
        self.table.scatter(slots, next_state)
        return WaveResult(slots=slots, score=score, contrib=contrib)
