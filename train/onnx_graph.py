"""A small builder for ONNX graphs: named constants and nodes, with generated intermediate names."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: npt.ArrayLike, hint: str = "c", dtype: Any = np.float32) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attrs))
        return name

    def matmul_add(self, x: str, weight: npt.NDArray[np.float32], bias: npt.NDArray[np.float32]) -> str:
        """``x @ weight + bias``."""
        return self.op("Add", self.op("MatMul", x, self.const(weight, "w")), self.const(bias, "b"))

    def columns(self, x: str, start: int, end: int) -> str:
        """``x[:, start:end]``."""
        return self.op(
            "Slice",
            x,
            self.const([start], "s", np.int64),
            self.const([end], "e", np.int64),
            self.const([1], "ax", np.int64),
        )

    def model(
        self,
        inputs: list[tuple[str, list[str | int]]],
        outputs: list[tuple[str, list[str | int]]],
        metadata: dict[str, str],
        doubles: frozenset[str] = frozenset(),
    ) -> onnx.ModelProto:
        """Tensors are (name, shape), float32 except the inputs named in ``doubles`` (float64)."""
        graph = helper.make_graph(
            self.nodes,
            "faultcast_step",
            [
                helper.make_tensor_value_info(
                    n, TensorProto.DOUBLE if n in doubles else TensorProto.FLOAT, shape
                )
                for n, shape in inputs
            ],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs],
            self.initializers,
        )
        proto = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="faultcast"
        )
        proto.ir_version = 8  # readable by onnxruntime >= 1.14
        helper.set_model_props(proto, metadata)
        return proto
