from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support import MACHINE_TEMPERATURE, WINDOWS
from train.series import load_nab_csv, load_nab_windows, parse_nab_time


def test_nab_file_loads_in_order_with_its_windows() -> None:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    assert len(series) == 22695 and series.channels == ("temp_c",)
    assert series.ts[0] == parse_nab_time("2013-12-02 21:15:00")
    # The upstream file steps back once, by 55 minutes (row 10149); the loader keeps rows as recorded and
    # the daemon drops the out-of-order readings that follow as `out_of_order`.
    backwards = np.flatnonzero(np.diff(series.ts) <= 0)
    assert backwards.tolist() == [10148]
    assert series.ts[10149] - series.ts[10148] == -3300.0
    windows = load_nab_windows(WINDOWS, "realKnownCause/machine_temperature_system_failure.csv")
    assert len(windows) == 4 and all(lo < hi for lo, hi in windows)
    assert windows[0][0] == parse_nab_time("2013-12-10 06:25:00")


def test_fingerprint_tracks_the_data(tmp_path: Path) -> None:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    assert series.head(100).fingerprint() == series.head(100).fingerprint()
    assert series.head(100).fingerprint() != series.head(101).fingerprint()
