"""The published NAB detectors' scores on the files of one run, for its report to compare with.

NAB publishes, per detector, each file's raw score at the detector's own whole-corpus threshold
(``results/<detector>/<detector>_<profile>_scores.csv``) and, for some, each row's ``anomaly_score``
(``results/<detector>/<category>/<detector>_<file>``). Summed over a run's files and normalised with
those files' null and perfect scores, the first gives the detector's score on exactly what the run
scored; swept over the rows like the run's own threshold, the second gives the fairer comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from train import nab_score as ns
from train.nab_score import STANDARD_PROFILES, LabelledFile, Window

Scores = tuple[float, float, float]  # normalised: standard, low-FP, low-FN

# NAB's result folders, and the names its scoreboard gives them; ``null`` scores 0 by definition.
DETECTORS: dict[str, str] = {
    "ARTime": "ARTime",
    "numenta": "HTM (numenta)",
    "numentaTM": "HTM TM (numentaTM)",
    "htmjava": "htmjava",
    "contextOSE": "CAD OSE",
    "knncad": "KNN CAD",
    "relativeEntropy": "Relative Entropy",
    "randomCutForest": "Random Cut Forest",
    "earthgeckoSkyline": "Earthgecko Skyline",
    "skyline": "Skyline",
    "twitterADVec": "Twitter ADVec",
    "windowedGaussian": "Windowed Gaussian",
    "bayesChangePt": "Bayesian Changepoint",
    "expose": "EXPoSE",
    "random": "random",
}


@dataclass(frozen=True)
class Published:
    """Each detector's normalised scores on a run's files: its threshold swept over them, and its own."""

    source: str
    files: int  # the files they were scored on
    swept: dict[str, Scores]
    corpus: dict[str, Scores]
    left_out: tuple[str, ...] = ()  # detectors whose results lack some of the files


def _corpus(results: Path, detector: str, keys: list[str], windows: int) -> Scores | None:
    scores = []
    for profile in STANDARD_PROFILES:
        path = results / detector / f"{detector}_{profile.name}_scores.csv"
        if not path.is_file():
            return None
        rows = {r.file: r.result.score for r in ns.read_scores_csv(path)}
        if any(k not in rows for k in keys):
            return None
        scores.append(ns.normalised_over(sum(rows[k] for k in keys), windows, profile))
    a, b, c = scores
    return a, b, c


def _swept(results: Path, detector: str, files: Mapping[str, tuple[Window, ...]]) -> Scores | None:
    labelled = []
    for key, limits in files.items():
        category, name = key.split("/")
        path = results / detector / category / f"{detector}_{name}"
        if not path.is_file():
            return None
        out = ns.load_detector_output(path)
        labelled.append(LabelledFile(key, out.timestamps, out.anomaly_scores, limits))
    a, b, c = (ns.normalised_score(ns.sweep(labelled, p).score, labelled, p) for p in STANDARD_PROFILES)
    return a, b, c


def published_scores(results: Path, files: Mapping[str, tuple[Window, ...]]) -> Published | None:
    """The detectors under NAB's ``results`` folder that scored every one of ``files`` (NAB key ->
    windows), best standard score first; None where none did."""
    keys, windows = sorted(files), sum(len(w) for w in files.values())
    corpus = {DETECTORS[d]: s for d in DETECTORS if (s := _corpus(results, d, keys, windows)) is not None}
    if not corpus:
        return None
    swept = {DETECTORS[d]: s for d in DETECTORS if (s := _swept(results, d, files)) is not None}
    present = [d for d in DETECTORS if (results / d).is_dir()]
    return Published(
        f"NAB's published results under {results}: each detector's per-file raw scores at its own "
        "threshold, summed over these files, and its per-row outputs where they are there",
        len(keys),
        dict(sorted(swept.items(), key=lambda kv: -kv[1][0])),
        dict(sorted(corpus.items(), key=lambda kv: -kv[1][0])),
        tuple(DETECTORS[d] for d in present if DETECTORS[d] not in corpus),
    )


SHIPPED_SOURCE = (
    "NAB's published results at commit ea702d75, which data/nab does not ship: faultcast keeps the "
    "sums over this category's files of each detector's per-file raw scores at its own threshold, and "
    "the sweeps of the per-row outputs it had (ARTime's and HTM's on realKnownCause)"
)
# For the categories whose data ships in data/nab, which holds no results folder; a test checks them
# against NAB's results as ../shared holds them (per-row outputs of ARTime and HTM on realKnownCause).
SHIPPED: dict[str, Published] = {
    "realKnownCause": Published(
        SHIPPED_SOURCE,
        7,
        {
            "ARTime": (66.45, 57.84, 72.37),
            "HTM (numenta)": (57.78, 50.43, 65.87),
        },
        {
            "ARTime": (63.88, 52.17, 70.66),
            "HTM (numenta)": (55.47, 49.27, 61.54),
            "htmjava": (52.19, 40.12, 59.36),
            "Relative Entropy": (49.93, 39.30, 56.09),
            "HTM TM (numentaTM)": (49.02, 32.65, 55.49),
            "KNN CAD": (45.24, 27.94, 54.72),
            "Random Cut Forest": (43.08, 16.02, 47.83),
            "CAD OSE": (41.75, 37.99, 49.38),
            "Earthgecko Skyline": (32.92, 27.70, 35.98),
            "Twitter ADVec": (26.70, 21.46, 30.08),
            "EXPoSE": (13.53, 5.15, 21.80),
            "Windowed Gaussian": (13.36, 9.86, 15.92),
            "Skyline": (10.13, 6.81, 12.02),
            "Bayesian Changepoint": (-1.15, -38.72, 22.90),
        },
        ("random",),
    ),
    "realTraffic": Published(
        SHIPPED_SOURCE,
        7,
        {},
        {
            "CAD OSE": (91.17, 88.42, 92.70),
            "ARTime": (86.86, 81.55, 91.24),
            "HTM (numenta)": (82.51, 75.73, 85.96),
            "Relative Entropy": (78.60, 71.26, 83.35),
            "HTM TM (numentaTM)": (77.12, 76.67, 79.99),
            "Earthgecko Skyline": (76.50, 73.49, 79.57),
            "htmjava": (76.37, 64.06, 79.49),
            "Skyline": (74.93, 49.59, 78.53),
            "Windowed Gaussian": (64.28, 61.53, 66.66),
            "Random Cut Forest": (63.83, 36.81, 66.10),
            "Twitter ADVec": (57.67, 55.70, 59.87),
            "KNN CAD": (49.86, 40.04, 54.67),
            "Bayesian Changepoint": (44.06, 25.14, 51.82),
            "EXPoSE": (36.05, 0.00, 55.91),
        },
        ("random",),
    ),
}


def published_for(root: Path, files: Mapping[str, tuple[Window, ...]]) -> Published | None:
    """The comparison for a run over ``files`` from the NAB folder ``root``: computed from its results
    folder where that has results for them, else the shipped numbers where the run covers a whole
    shipped category, else None."""
    if (root / "results").is_dir() and (found := published_scores(root / "results", files)) is not None:
        return found
    categories = {key.split("/")[0] for key in files}
    category = categories.pop() if len(categories) == 1 else None
    shipped = SHIPPED.get(category or "")
    return shipped if shipped is not None and shipped.files == len(files) else None
