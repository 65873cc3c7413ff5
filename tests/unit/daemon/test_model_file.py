"""Loading a step model: every breach of the contract is a ModelError that says what to do."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from daemon.engine import HostEngine
from daemon.errors import ModelError
from daemon.model_file import METADATA_KEY, read_model
from tests.support import write_model


def _with_metadata(src: Path, dst: Path, value: str | None) -> Path:
    proto = onnx.load(str(src))
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if value is not None:
        onnx.helper.set_model_props(proto, {METADATA_KEY: value})
    dst.write_bytes(proto.SerializeToString())
    return dst


def test_good_model_loads_with_its_metadata(tmp_path: Path) -> None:
    # h and c, then base, pred and the smoothed error of its one channel, level and steps
    _, info = read_model(write_model(tmp_path / "m.onnx", hidden=8))
    assert (
        info.features == ("temp_c",) and info.state_width == 2 * 8 + 5 and info.thresholds == {"fault": 3.0}
    )
    assert info.reading_step_s is None  # no training record: the daemon cannot tell a faster pace


@pytest.mark.parametrize(
    ("training", "step"),
    [
        ({"reading_step_s": 300}, 300.0),
        ({"reading_step_s": 0.5}, 0.5),
        ({"reading_step_s": None}, None),
        ({"reading_step_s": 0}, None),
        ({"reading_step_s": -60.0}, None),
        ({"reading_step_s": float("nan")}, None),
        ({"reading_step_s": float("inf")}, None),
        ({"reading_step_s": "300"}, None),
        ({"reading_step_s": True}, None),
        ({}, None),
        (None, None),
        ("five minutes", None),
    ],
)
def test_the_trained_step_is_read_where_usable(tmp_path: Path, training: object, step: float | None) -> None:
    src = write_model(tmp_path / "m.onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(str(src)).metadata_props}[METADATA_KEY])
    meta["training"] = training
    _, info = read_model(_with_metadata(src, tmp_path / "t.onnx", json.dumps(meta)))
    assert info.reading_step_s == step


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (None, "no 'faultcast' metadata; export it with `faultcast train`"),
        ("{not json", "unreadable 'faultcast' metadata"),
        ('{"format_version": 1}', "unreadable 'faultcast' metadata"),
        ('{"format_version": 99}', "format_version 99 is not 1; re-export it"),
    ],
)
def test_broken_metadata_is_a_model_error(tmp_path: Path, metadata: str | None, message: str) -> None:
    path = _with_metadata(write_model(tmp_path / "m.onnx"), tmp_path / "broken.onnx", metadata)
    with pytest.raises(ModelError, match=message):
        HostEngine(path, 4)


def test_missing_or_garbage_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read it"):
        read_model(tmp_path / "absent.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01 not a protobuf")
    with pytest.raises(ModelError):
        read_model(tmp_path / "garbage.onnx")
