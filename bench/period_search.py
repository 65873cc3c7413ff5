"""The season check's period search (train.season.find_period) on long recordings, against the direct
autocorrelation it replaced, measured in the same run.

    .venv/bin/python bench/period_search.py [--rows 10000 50000 200000] [--channels 1]

For each length of a daily rhythm (1,440 readings, a day of minutes) with noise: seconds for the
autocorrelation find_period takes (lags up to a third of the length) by FFT, as train.season computes it,
and directly by np.correlate, as it did before; their ratio and largest difference; and seconds for the
whole find_period with the period it finds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import numpy.typing as npt

from train import season


def direct_autocorrelation(part: npt.NDArray[np.float32], lags: int) -> npt.NDArray[np.float64]:
    """The baseline: each varying channel's autocorrelation by np.correlate, averaged."""
    centred = part.astype(np.float64) - part.mean(axis=0)
    power = (centred**2).sum(axis=0)
    varying = np.flatnonzero(power > 0)
    out = np.zeros(lags)
    for c in varying:
        out += (
            np.correlate(centred[:, c], centred[:, c], "full")[len(part) - 1 : len(part) - 1 + lags]
            / power[c]
        )
    return out / max(len(varying), 1)


def timed(rows: int, channels: int) -> tuple[float, float, float, float, int | None]:
    """Seconds for the autocorrelation over a third of the lengths (as find_period takes it), by FFT and
    directly; their largest difference; seconds for the whole find_period, and what it finds."""
    rng = np.random.default_rng(0)
    t = np.arange(rows)
    x = (np.sin(2 * np.pi * t / 1440)[:, None] + rng.normal(0, 0.5, (rows, channels))).astype(np.float32)
    lags = rows // 3 + 1
    start = time.perf_counter()
    fast = season.autocorrelation(x, lags)
    fft_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = direct_autocorrelation(x, lags)
    direct_s = time.perf_counter() - start
    start = time.perf_counter()
    found = season.find_period([x])
    return fft_s, direct_s, float(np.abs(fast - slow).max()), time.perf_counter() - start, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--channels", type=int, default=1)
    args = parser.parse_args()
    print("| readings | FFT (s) | direct (s) | speed-up | largest difference | find_period (s) | period |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        fft_s, direct_s, diff, whole_s, found = timed(rows, args.channels)
        ratio = direct_s / fft_s
        print(f"| {rows:,} | {fft_s:.3f} | {direct_s:.2f} | {ratio:.0f}x | {diff:.1e} ", end="")
        print(f"| {whole_s:.3f} | {found} |")


if __name__ == "__main__":
    main()
