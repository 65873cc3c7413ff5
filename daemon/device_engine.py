"""The device engine: the state table lives in device memory and is bound to onnxruntime with IOBinding.

On a GPU with onnxruntime-gpu, a wave gathers its streams' rows on the device, the step reads them
there and writes the next state into a device buffer that is scattered back on the device: the state
never crosses to the host. Only the readings go in and the per-reading results come out. With
``device="cpu"`` the same code runs on host memory (the CPU twin the tests exercise).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from daemon.engine import ModelSession, WaveResult, diverged_rows, fixed_inputs, output_shapes
from daemon.errors import DeviceError
from daemon.model_file import ModelInfo
from daemon.state_table import FloatArray, IntArray, SlotMap

PROVIDERS = {"cuda": ["CUDAExecutionProvider"], "cpu": ["CPUExecutionProvider"]}


def cuda_available() -> bool:
    """Whether a GPU can hold the state and onnxruntime can run on it."""
    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


class DeviceStateTable:
    """Every live stream's state of one model in one ``[capacity, width]`` tensor on ``device``."""

    def __init__(self, width: int, capacity: int, device: str) -> None:
        self.device = device
        self.width = width
        self.slots = SlotMap(capacity)
        self.data = torch.zeros((capacity, width), dtype=torch.float32, device=device)

    @property
    def nbytes(self) -> int:
        return self.data.element_size() * self.data.nelement()

    def assign(self, streams: list[str]) -> IntArray:
        """Slots for ``streams`` (distinct), allocating zeroed (cold) state for new ones."""
        slots, fresh = self.slots.assign(streams)
        if self.slots.capacity != self.data.shape[0]:
            grown = torch.zeros((self.slots.capacity, self.width), dtype=torch.float32, device=self.device)
            grown[: self.data.shape[0]] = self.data
            self.data = grown
        if fresh.any():
            self.data[torch.from_numpy(slots[fresh]).to(self.device)] = 0.0
        return slots

    def rows(self, slots: IntArray) -> torch.Tensor:
        """The rows of ``slots``, on the device."""
        return self.data.index_select(0, torch.from_numpy(slots).to(self.device))

    def put(self, slots: IntArray, state: torch.Tensor) -> None:
        self.data.index_copy_(0, torch.from_numpy(slots).to(self.device), state)

    def gather(self, slots: IntArray) -> FloatArray:
        """The rows of ``slots`` copied to the host (checkpoints)."""
        return self.rows(slots).cpu().numpy()

    def scatter(self, slots: IntArray, state: FloatArray) -> None:
        self.put(slots, torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32)).to(self.device))

    def reshape(self, width: int) -> None:
        """Every stream's state becomes cold, ``width`` wide; slots and timestamps stay."""
        self.width = width
        self.data = torch.zeros((self.slots.capacity, width), dtype=torch.float32, device=self.device)

    def evict(self, streams: list[str]) -> None:
        self.slots.release(streams)


class DeviceEngine(ModelSession):
    """Engine whose state table is device memory, bound to the session with IOBinding."""

    table: DeviceStateTable

    def __init__(self, path: Path, initial_capacity: int, device: str, baseline: int | None = None) -> None:
        if device == "cuda" and not cuda_available():
            raise DeviceError(
                "state.device is 'cuda' but no GPU is usable (torch.cuda or onnxruntime-gpu's "
                "CUDAExecutionProvider is missing); install faultcast[gpu] on a GPU host, "
                "or set state.device: cpu"
            )
        self.device = device
        super().__init__(path, PROVIDERS[device], baseline)
        self.table = DeviceStateTable(self.info.state_width, initial_capacity, device)

    def _prepare(self, info: ModelInfo) -> None:
        self._fixed = {
            k: torch.from_numpy(v).to(self.device) for k, v in fixed_inputs(info, self.baseline).items()
        }

    def step(
        self, streams: list[str], x: FloatArray, reset: npt.NDArray[np.bool_], ts: npt.NDArray[np.float64]
    ) -> WaveResult:
        """Advances each of ``streams`` (distinct) by one reading; as HostEngine.step."""
        n = len(streams)
        slots = self.table.assign(streams)
        state = self.table.rows(slots)
        if reset.any():
            state[torch.from_numpy(np.flatnonzero(reset)).to(self.device)] = 0.0
        inputs = {"x": torch.from_numpy(np.ascontiguousarray(x)).to(self.device), "state": state}
        if self.info.clock:
            inputs["ts"] = torch.from_numpy(np.ascontiguousarray(ts, dtype=np.float64)).to(self.device)
        inputs.update(self._fixed)
        shapes = output_shapes(self.info, n, self.table.width)
        # The next state stays on the device; what the alert logic reads comes to the host.
        host = {
            name: np.empty(shape, dtype=np.float32) for name, shape in shapes.items() if name != "next_state"
        }
        next_state = torch.empty(shapes["next_state"], dtype=torch.float32, device=self.device)
        binding = self._session.io_binding()
        for name, tensor in inputs.items():
            self._bind(binding.bind_input, name, tensor)
        self._bind(binding.bind_output, "next_state", next_state)
        for name, array in host.items():
            binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
        if self.device == "cuda":
            # torch and onnxruntime work on different CUDA streams: the gather must be done before the
            # step reads it, and the step done before the scatter reads its output.
            torch.cuda.synchronize()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        diverged = ~torch.isfinite(next_state).all(dim=1).cpu().numpy() | diverged_rows(host)
        if diverged.any():
            next_state[torch.from_numpy(np.flatnonzero(diverged)).to(self.device)] = 0.0
        self.table.put(slots, next_state)
        return WaveResult.of(slots, host, diverged)

    @staticmethod
    def _bind(bind: Callable[..., None], name: str, tensor: torch.Tensor) -> None:
        """Binds ``tensor``'s memory in place; the caller keeps it alive until the run is over."""
        assert tensor.is_contiguous()
        kind = "cuda" if tensor.is_cuda else "cpu"
        dtype = np.float64 if tensor.dtype == torch.float64 else np.float32
        bind(name, kind, tensor.device.index or 0, dtype, list(tensor.shape), tensor.data_ptr())
