"""The published detectors a NAB report compares with are scored on the run's own files."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support import NAB, SHARED_DATA
from train.evaluate_nab import published_section
from train.nab_published import SHIPPED, published_for, published_scores
from train.nab_score import SCORES_HEADER, STANDARD_PROFILES, Window, load_windows

SHARED_NAB = SHARED_DATA / "NAB"
T0 = datetime(2020, 1, 1)


def _scores_csv(results: Path, detector: str, raw: dict[str, tuple[float, float, float]]) -> None:
    """NAB's ``<detector>_<profile>_scores.csv`` with each file's raw score per profile."""
    for i, profile in enumerate(STANDARD_PROFILES):
        path = results / detector / f"{detector}_{profile.name}_scores.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(SCORES_HEADER)
            for key, scores in raw.items():
                w.writerow([detector, profile.name, key, 0.5, scores[i], 0, 0, 0, 0, 100])
            w.writerow(["Totals", "", "", "", sum(s[i] for s in raw.values()), 0, 0, 0, 0, 0])


def _rows_csv(results: Path, detector: str, key: str, windows: tuple[Window, ...], rows: int) -> None:
    """A per-row output that scores 1 on each window's first row and 0 elsewhere: NAB's perfect detector."""
    category, name = key.split("/")
    path = results / detector / category / f"{detector}_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    starts = {a for a, _ in windows}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for i in range(rows):
            t = T0 + timedelta(minutes=5 * i)
            w.writerow([t.strftime("%Y-%m-%d %H:%M:%S"), 1.0, 1.0 if t in starts else 0.0])


def _window(first: int, last: int) -> Window:
    return T0 + timedelta(minutes=5 * first), T0 + timedelta(minutes=5 * last)


FILES = {"cat/a.csv": (_window(500, 520),), "cat/b.csv": (_window(300, 320), _window(700, 720))}


def test_corpus_rows_sum_the_run_files_raw_scores_and_normalise_with_their_windows(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _scores_csv(
        results,
        "ARTime",
        {"cat/a.csv": (1.0, 0.5, 2.0), "cat/b.csv": (-0.5, -1.0, 0.0), "x/c.csv": (9, 9, 9)},
    )
    _scores_csv(results, "numenta", {"cat/a.csv": (1.0, 1.0, 1.0)})  # lacks b: not comparable
    got = published_scores(results, FILES)
    assert got is not None and got.files == 2 and list(got.corpus) == ["ARTime"]
    assert got.left_out == ("HTM (numenta)",)
    # 3 windows: null -3 and perfect 3 (standard, low-FP), null -6 and perfect 3 (low-FN, misses cost 2)
    assert got.corpus["ARTime"] == pytest.approx((100 * 3.5 / 6, 100 * 2.5 / 6, 100 * 8 / 9))
    assert got.swept == {}  # no per-row outputs


def test_swept_rows_sweep_the_per_row_outputs_of_exactly_the_run_files(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for key, windows in FILES.items():
        _rows_csv(results, "ARTime", key, windows, 1000)
    _rows_csv(results, "numenta", "cat/a.csv", FILES["cat/a.csv"], 1000)  # lacks b
    _scores_csv(results, "ARTime", {k: (0.0, 0.0, 0.0) for k in FILES})
    got = published_scores(results, FILES)
    assert got is not None and got.swept == {"ARTime": pytest.approx((100.0, 100.0, 100.0))}
    assert published_scores(results, {"other/c.csv": FILES["cat/a.csv"]}) is None  # nobody scored it


def test_the_report_gets_shipped_numbers_only_for_a_whole_shipped_category(tmp_path: Path) -> None:
    windows = load_windows(NAB / "labels" / "combined_windows.json")
    known = {k: v for k, v in windows.items() if k.startswith("realKnownCause/")}
    assert not (NAB / "results").exists()
    assert published_for(NAB, known) is SHIPPED["realKnownCause"]
    one = dict(list(known.items())[:1])
    assert published_for(NAB, one) is None
    mixed = one | {k: v for k, v in windows.items() if k.startswith("realTraffic/")}
    assert published_for(NAB, mixed) is None
    # a root with a results folder is scored from it, even for a shipped category
    _scores_csv(tmp_path / "results", "ARTime", {k: (0.0, 0.0, 0.0) for k in known})
    got = published_for(tmp_path, known)
    assert got is not None and got.source.startswith("NAB's published results under")
    # a results folder without these files falls back to what is kept
    traffic = {k: v for k, v in windows.items() if k.startswith("realTraffic/")}
    assert published_for(tmp_path, traffic) is SHIPPED["realTraffic"]
    assert got.corpus["ARTime"] == pytest.approx((50.0, 50.0, 100 * 2 / 3))


@pytest.mark.parametrize("category", sorted(SHIPPED))
def test_shipped_numbers_are_what_nab_results_give(category: str) -> None:
    if not SHARED_NAB.is_dir():
        pytest.skip(f"NAB reference data folder {SHARED_NAB} is missing (expected next to the repo clone)")
    windows = load_windows(SHARED_NAB / "labels" / "combined_windows.json")
    files = {k: v for k, v in windows.items() if k.startswith(f"{category}/")}
    got = published_scores(SHARED_NAB / "results", files)
    shipped = SHIPPED[category]
    assert got is not None and shipped.files == got.files == len(files)
    assert list(shipped.corpus) == list(got.corpus) and shipped.left_out == got.left_out
    for name, scores in shipped.corpus.items():
        assert scores == pytest.approx(got.corpus[name], abs=0.005), name
    # a NAB checkout holds more per-row outputs than ../shared, and so more swept rows
    for name, scores in shipped.swept.items():
        assert scores == pytest.approx(got.swept[name], abs=0.005), name


def test_the_summary_shows_the_published_rows_or_says_why_there_are_none() -> None:
    head = ["detector", *(p.name for p in STANDARD_PROFILES)]
    shown = "\n".join(published_section(SHIPPED["realKnownCause"], 7, head))
    assert (
        "on these 7 files" in shown
        and "Left out, their results lacking some of these files: random." in shown
    )
    assert "| ARTime (swept) | 66.45 | 57.84 | 72.37 |" in shown
    assert "| ARTime (corpus threshold) | 63.88 | 52.17 | 70.66 |" in shown
    traffic = "\n".join(published_section(SHIPPED["realTraffic"], 7, head))
    assert "(swept)" not in traffic and "| CAD OSE (corpus threshold) | 91.17 |" in traffic
    assert published_section(None, 1, head) == [
        "Published detectors: none for this file (NAB's results folder, in a NAB checkout, has them "
        "for every file; pass that checkout as --root to compare)."
    ]
