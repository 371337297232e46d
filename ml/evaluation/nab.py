"""Numenta Anomaly Benchmark: load a NAB layout, run detectors online, score them NAB's way.

Scoring follows NAB v1.1 (``nab/sweeper.py`` and ``Runner.normalize``):

- The first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a file are probationary: the detector
  learns there and nothing in them is scored (a window lying wholly inside is not scored either).
- Each point gets a sweep weight. Inside a window of ``width`` rows ending at row ``e`` a point at
  row ``i`` weighs ``A_TP * sigma(-(e - i + 1) / width) / sigma(-1)``, where
  ``sigma(x) = 2 / (1 + exp(5x)) - 1`` (the scaled sigmoid): a detection on the first row of the
  window earns exactly ``A_TP``, one on the last row almost nothing. Outside windows a point weighs
  ``A_FP * sigma(|i - e_prev| / (width_prev - 1))`` after a window (a small penalty just after it,
  growing to ``-A_FP`` far from it) and ``-A_FP`` before the first window.
- At a threshold ``T`` the detections are the scored rows with ``score >= T``. A window
  contributes the largest weight among its detections (its earliest detection) or ``-A_FN`` when
  it has none; every detection outside windows adds its (negative) weight.
- The threshold is tuned per profile over the whole corpus by an exhaustive sweep over every
  distinct score (NAB's sweeper; ties go to the higher threshold, as NAB's stable sort does).
- Normalised score ``100 * (S - S_null) / (S_perfect - S_null)``: ``S_null`` is the score without
  detections (``-A_FN`` per scored window), ``S_perfect = A_TP * windows``.

Differences from NAB, none of which changes a score on NAB's own labels: window limits are
matched to rows by ``start <= timestamp <= end`` (NAB's labeller guarantees exact timestamps and
matches by equality); a window one row wide is treated as two rows wide after it ends (NAB divides
by zero there); only the files present in the data directory are scored and normalised.

Alongside the NAB scores: at the standard profile's threshold, ``recall`` is the share of scored
windows with at least one detection, ``precision`` is detected windows over (detected windows +
detections outside windows) -- a window counts once however many rows inside it fire, every row
outside fires its own alert, as NAB charges it -- ``f1`` their harmonic mean and ``fpr`` the share
of scored rows outside windows that were detections.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PROBATIONARY_PERCENT = 0.15
_PROBATION_CAP_ROWS = 5000


class EvaluationError(RuntimeError):
    """The evaluation cannot produce a meaningful score (no data, bad scores, no windows)."""


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weights of a true positive, false positive, false negative."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


#: NAB's ``config/profiles.json``.
NAB_PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
)

#: Result keys of the three NAB profiles.
PROFILE_KEYS: Mapping[str, str] = {
    "standard": "nab_standard",
    "reward_low_FP_rate": "nab_low_fp",
    "reward_low_FN_rate": "nab_low_fn",
}


def load_profiles(path: Path) -> tuple[Profile, ...]:
    """Profiles from a NAB ``profiles.json`` (``{name: {"CostMatrix": {"tpWeight": ...}}}``)."""
    raw = json.loads(Path(path).read_text())
    try:
        return tuple(
            Profile(
                name,
                tp_weight=float(spec["CostMatrix"]["tpWeight"]),
                fp_weight=float(spec["CostMatrix"]["fpWeight"]),
                fn_weight=float(spec["CostMatrix"]["fnWeight"]),
            )
            for name, spec in raw.items()
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise EvaluationError(f"{path}: not a NAB profiles file ({exc!r})") from exc


def probationary_length(rows: int, percent: float = PROBATIONARY_PERCENT) -> int:
    """Rows at the start of a file that are learnt from and never scored (NAB's rule)."""
    return int(min(math.floor(percent * rows), percent * _PROBATION_CAP_ROWS))


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: 0.987 at -1 (window start), 0 at 0, -0.987 at 1, -1 beyond 3."""
    x = np.asarray(position, dtype=float)
    value = 2.0 / (1.0 + np.exp(np.clip(5.0 * x, -700, 700))) - 1.0
    return np.where(x >= 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True)
class NabSeries:
    """One labelled NAB file: its values and its anomaly windows as inclusive row ranges."""

    name: str
    values: pd.Series
    windows: tuple[tuple[int, int], ...]
    probation: int

    @property
    def rows(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class NabCorpus:
    """The labelled files found in a NAB data directory."""

    series: tuple[NabSeries, ...]
    labelled_missing: tuple[str, ...] = ()
    unlabelled_present: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    unsorted: tuple[str, ...] = ()

    @property
    def window_count(self) -> int:
        return sum(len(s.windows) for s in self.series)

    def subset(self, names: Sequence[str]) -> NabCorpus:
        """Only the named files (all of which must be present)."""
        wanted = set(names)
        picked = tuple(s for s in self.series if s.name in wanted)
        missing = wanted - {s.name for s in picked}
        if missing:
            raise EvaluationError(f"not in the corpus: {sorted(missing)}")
        return NabCorpus(series=picked)


def _window_rows(timestamps: pd.DatetimeIndex, start: str, end: str) -> tuple[int, int] | None:
    """The window as file rows: from the first row inside ``[start, end]`` to the last, in file
    order (NAB's own scorer locates windows by timestamp in the file as written, so a timestamp
    that steps backwards stays where the file puts it)."""
    inside = np.flatnonzero((timestamps >= pd.Timestamp(start)) & (timestamps <= pd.Timestamp(end)))
    if inside.size == 0:
        return None
    return int(inside[0]), int(inside[-1])


def backward_steps(timestamps: pd.DatetimeIndex) -> int:
    """How many rows carry a timestamp earlier than the row before them."""
    return int((np.diff(timestamps.asi8) < 0).sum())


def category(name: str) -> str:
    """A file's NAB category: its folder (``realAWSCloudwatch/x.csv`` -> ``realAWSCloudwatch``)."""
    return name.split("/", 1)[0] if "/" in name else ""


def read_series(path: Path, name: str | None = None) -> pd.Series:
    """A NAB data file (``timestamp,value``) as a float series indexed by timestamp."""
    frame = pd.read_csv(path)
    if not {"timestamp", "value"} <= set(frame.columns):
        raise EvaluationError(
            f"{path}: expected columns timestamp,value, got {list(frame.columns)}"
        )
    index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]), name="timestamp")
    values = pd.Series(frame["value"].astype(float).to_numpy(), index=index, name=name or "value")
    steps = backward_steps(index)
    if steps:
        # Real NAB files do this; NAB scores them in file order, and so does this evaluator.
        logger.warning("%s: %d timestamps step backwards; kept in file order", path, steps)
    if values.isna().any():
        raise EvaluationError(f"{path}: missing values")
    return values


def load_corpus(data_dir: Path, labels_path: Path) -> NabCorpus:
    """The files of ``data_dir/<category>/<file>.csv`` that ``labels_path`` labels.

    The labels file (NAB's ``combined_windows.json``) may list files the directory lacks; those
    are skipped. Files without labels cannot be scored and are skipped too. A file that cannot
    be read or whose windows do not fit it is skipped with its reason (``NabCorpus.skipped``),
    never aborting the corpus; a file whose timestamps step backwards is kept in file order, as
    NAB scores it, and listed in ``NabCorpus.unsorted``.

    Raises:
        EvaluationError: when no labelled file could be loaded.
    """
    data_dir = Path(data_dir)
    labels = json.loads(Path(labels_path).read_text())
    present = sorted(
        p.relative_to(data_dir).as_posix() for p in data_dir.glob("*/*.csv") if p.is_file()
    )
    series = []
    skipped: list[tuple[str, str]] = []
    unsorted: list[str] = []
    for name in present:
        if name not in labels:
            continue
        try:
            loaded = _load_file(data_dir / name, name, labels[name])
        except (EvaluationError, ValueError) as exc:
            logger.warning("skipping %s: %s", name, exc)
            skipped.append((name, str(exc)))
            continue
        series.append(loaded)
        if backward_steps(loaded.values.index):
            unsorted.append(name)
    if not series:
        raise EvaluationError(
            f"none of the labelled files under {data_dir} could be loaded"
            + (f" (skipped: {skipped})" if skipped else "")
        )
    present_set = set(present)
    absent = set(labels) - present_set
    if absent:
        logger.info(
            "%d labelled files are not under %s; scoring %d", len(absent), data_dir, len(series)
        )
    return NabCorpus(
        series=tuple(series),
        labelled_missing=tuple(sorted(set(labels) - present_set)),
        unlabelled_present=tuple(sorted(present_set - set(labels))),
        skipped=tuple(skipped),
        unsorted=tuple(unsorted),
    )


def _load_file(path: Path, name: str, labelled: Sequence[Sequence[str]]) -> NabSeries:
    values = read_series(path, name=name)
    windows = []
    for start, end in labelled:
        rows = _window_rows(values.index, start, end)
        if rows is None:
            raise EvaluationError(f"{name}: window {start} .. {end} holds no rows")
        windows.append(rows)
    windows.sort()
    for (_, prev_end), (next_start, _) in itertools.pairwise(windows):
        if next_start <= prev_end:
            raise EvaluationError(f"{name}: overlapping windows")
    return NabSeries(
        name=name, values=values, windows=tuple(windows), probation=probationary_length(len(values))
    )


@dataclass(frozen=True)
class _SweepRows:
    """The scored rows of one file: their weights and which window (-1: none) they lie in."""

    weights: np.ndarray
    window: np.ndarray
    scored: np.ndarray
    scored_windows: int


def _sweep_rows(series: NabSeries, profile: Profile) -> _SweepRows:
    n = series.rows
    idx = np.arange(n)
    weights = np.full(n, -profile.fp_weight)
    window = np.full(n, -1)
    prev_end: int | None = None
    prev_width = 0
    for k, (start, end) in enumerate(series.windows):
        width = end - start + 1
        if prev_end is not None:
            gap = slice(prev_end + 1, start)
            position = np.abs(idx[gap] - prev_end) / max(prev_width - 1, 1)
            weights[gap] = scaled_sigmoid(position) * profile.fp_weight
        inside = slice(start, end + 1)
        position = -(end - idx[inside] + 1) / width
        weights[inside] = scaled_sigmoid(position) * profile.tp_weight / _MAX_TP
        window[inside] = k
        prev_end, prev_width = end, width
    if prev_end is not None:
        tail = slice(prev_end + 1, n)
        position = np.abs(idx[tail] - prev_end) / max(prev_width - 1, 1)
        weights[tail] = scaled_sigmoid(position) * profile.fp_weight
    scored = idx >= series.probation
    scored_windows = len({int(w) for w in window[scored] if w >= 0})
    return _SweepRows(weights=weights, window=window, scored=scored, scored_windows=scored_windows)


@dataclass(frozen=True)
class ThresholdSweep:
    """Raw NAB score of a corpus at every candidate threshold (descending; first = none)."""

    thresholds: np.ndarray
    scores: np.ndarray

    def best(self) -> tuple[float, float]:
        """(threshold, score) maximising the score; ties go to the higher threshold."""
        k = int(np.argmax(self.scores))
        return float(self.thresholds[k]), float(self.scores[k])


def _check_scores(name: str, scores: np.ndarray, rows: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (rows,):
        raise EvaluationError(f"{name}: {scores.shape} scores for {rows} rows")
    if not np.isfinite(scores).all():
        raise EvaluationError(f"{name}: scores are not all finite")
    return scores


def sweep_thresholds(
    corpus: NabCorpus, scores: Mapping[str, np.ndarray], profile: Profile
) -> ThresholdSweep:
    """NAB's threshold sweep: the corpus score for every distinct anomaly score as threshold.

    Args:
        corpus: the labelled files.
        scores: file name -> one anomaly score per row (probationary rows are ignored).
        profile: the cost weights.
    """
    all_scores, deltas = [], []
    base = 0.0
    for series in corpus.series:
        s = _check_scores(series.name, scores[series.name], series.rows)
        rows = _sweep_rows(series, profile)
        base -= profile.fn_weight * rows.scored_windows
        s, w, win = s[rows.scored], rows.weights[rows.scored], rows.window[rows.scored]
        delta = np.where(win < 0, w, 0.0)
        for k in np.unique(win[win >= 0]):
            members = np.flatnonzero(win == k)
            order = members[np.argsort(-s[members], kind="stable")]
            running = np.maximum.accumulate(np.concatenate(([-profile.fn_weight], w[order])))
            delta[order] = np.diff(running)
        all_scores.append(s)
        deltas.append(delta)
    s = np.concatenate(all_scores)
    delta = np.concatenate(deltas)
    order = np.argsort(-s, kind="stable")
    s, cumulative = s[order], np.cumsum(delta[order])
    # The score at threshold T counts every row with score >= T: the end of each tie group.
    group_end = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    thresholds = np.concatenate(([np.inf], s[group_end]))
    totals = np.concatenate(([base], base + cumulative[group_end]))
    return ThresholdSweep(thresholds=thresholds, scores=totals)


@dataclass(frozen=True)
class FileScore:
    """One file at one threshold: its raw NAB score and detection counts."""

    name: str
    score: float
    windows: int
    detected_windows: int
    detections_outside: int
    rows_outside: int


def score_file(
    series: NabSeries, scores: np.ndarray, profile: Profile, threshold: float
) -> FileScore:
    """The raw NAB score of one file with detections ``score >= threshold``."""
    s = _check_scores(series.name, scores, series.rows)
    rows = _sweep_rows(series, profile)
    fired = (s >= threshold) & rows.scored
    total = 0.0
    detected = 0
    for k in np.unique(rows.window[rows.scored & (rows.window >= 0)]):
        hits = fired & (rows.window == k)
        if hits.any():
            total += float(rows.weights[hits].max())
            detected += 1
        else:
            total -= profile.fn_weight
    outside = rows.scored & (rows.window < 0)
    false_alarms = fired & outside
    total += float(rows.weights[false_alarms].sum())
    return FileScore(
        name=series.name,
        score=total,
        windows=rows.scored_windows,
        detected_windows=detected,
        detections_outside=int(false_alarms.sum()),
        rows_outside=int(outside.sum()),
    )


@dataclass(frozen=True)
class ProfileScore:
    """A detector's corpus score on one profile at its tuned threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float

    @property
    def normalized(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def score_profile(
    corpus: NabCorpus, scores: Mapping[str, np.ndarray], profile: Profile
) -> ProfileScore:
    """Tune the threshold on ``profile`` and normalise (null = 0, perfect = 100).

    Raises:
        EvaluationError: when the corpus holds no window to score.
    """
    if corpus.window_count == 0:
        raise EvaluationError("the scored files hold no anomaly window: NAB cannot normalise")
    sweep = sweep_thresholds(corpus, scores, profile)
    threshold, raw = sweep.best()
    return ProfileScore(
        profile=profile.name,
        threshold=threshold,
        raw=raw,
        null=float(sweep.scores[0]),
        perfect=profile.tp_weight * corpus.window_count,
    )


@dataclass(frozen=True)
class NabReport:
    """A detector's NAB scores (normalised, per profile) and detection metrics."""

    nab_standard: float
    nab_low_fp: float
    nab_low_fn: float
    precision: float
    recall: float
    f1: float
    fpr: float
    thresholds: dict[str, float]
    files: tuple[FileScore, ...] = field(default=(), repr=False)
    failed_files: tuple[tuple[str, str], ...] = ()

    def categories(self, tp_weight: float = 1.0, fn_weight: float = 1.0) -> dict[str, Any]:
        """Per NAB category (the file's folder), at the standard profile's tuned threshold:
        files, windows, recall, detections outside windows and the normalised standard score
        (null = every window missed, perfect = every window detected at its start)."""
        out: dict[str, Any] = {}
        for name in sorted({category(f.name) for f in self.files}):
            files = [f for f in self.files if category(f.name) == name]
            windows = sum(f.windows for f in files)
            detected = sum(f.detected_windows for f in files)
            raw = math.fsum(f.score for f in files)
            null, perfect = -fn_weight * windows, tp_weight * windows
            out[name] = {
                "files": len(files),
                "windows": windows,
                "recall": detected / windows if windows else None,
                "detections_outside": sum(f.detections_outside for f in files),
                "nab_standard": 100.0 * (raw - null) / (perfect - null) if windows else None,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI: the seven metrics, the tuned thresholds, the scores per
        category and the files a detector failed on."""
        out: dict[str, Any] = {
            k: v
            for k, v in asdict(self).items()
            if k not in {"files", "thresholds", "failed_files"}
        }
        out["thresholds"] = {
            k: (v if math.isfinite(v) else None) for k, v in self.thresholds.items()
        }
        out["categories"] = self.categories()
        out["failed_files"] = [list(failure) for failure in self.failed_files]
        return out


def evaluate_scores(
    corpus: NabCorpus,
    scores: Mapping[str, np.ndarray],
    profiles: Sequence[Profile] = NAB_PROFILES,
) -> NabReport:
    """NAB scores on each profile plus precision/recall/F1/FPR at the standard threshold."""
    by_profile = {p.name: score_profile(corpus, scores, p) for p in profiles}
    missing = set(PROFILE_KEYS) - set(by_profile)
    if missing:
        raise EvaluationError(f"profiles missing: {sorted(missing)}")
    standard = next(p for p in profiles if p.name == "standard")
    threshold = by_profile["standard"].threshold
    files = tuple(score_file(s, scores[s.name], standard, threshold) for s in corpus.series)
    windows = sum(f.windows for f in files)
    detected = sum(f.detected_windows for f in files)
    false_alarms = sum(f.detections_outside for f in files)
    negatives = sum(f.rows_outside for f in files)
    recall = detected / windows if windows else 0.0
    precision = detected / (detected + false_alarms) if detected + false_alarms else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return NabReport(
        **{PROFILE_KEYS[name]: score.normalized for name, score in by_profile.items()},
        precision=precision,
        recall=recall,
        f1=f1,
        fpr=false_alarms / negatives if negatives else 0.0,
        thresholds={name: score.threshold for name, score in by_profile.items()},
        files=files,
    )


class _Result(Protocol):
    scores: np.ndarray
    components: Mapping[str, _Result]


class _Detector(Protocol):
    name: str

    def fit(self, train: pd.Series) -> object: ...

    def score(self, series: pd.Series) -> _Result: ...


@dataclass(frozen=True)
class CorpusRun:
    """Per detector (the one run and its components), one full-length score array per file."""

    scores: dict[str, dict[str, np.ndarray]]
    seconds: float
    failed: dict[str, str] = field(default_factory=dict)


def run_online(
    corpus: NabCorpus,
    make_detector: Callable[[], _Detector],
    *,
    on_file: Callable[[str, float], None] | None = None,
) -> CorpusRun:
    """Run a fresh detector per file the way NAB streams it.

    The detector is fitted on the probationary rows only and then scores the rest of the file
    with its own online logic (each row scored from the rows before it and itself); probationary
    rows get score 0, which NAB ignores anyway. A detector's ``components`` (an ensemble's
    members) are collected too, under their own names.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    failed: dict[str, str] = {}
    started = time.perf_counter()
    for series in corpus.series:
        file_started = time.perf_counter()
        detector = make_detector()
        train = series.values.iloc[: series.probation]
        stream = series.values.iloc[series.probation :]
        try:
            detector.fit(train)
            result = detector.score(stream)
        except Exception as exc:  # one file never aborts the corpus: recorded and reported
            logger.warning("detector failed on %s: %s", series.name, exc)
            failed[series.name] = f"{type(exc).__name__}: {exc}"
            continue
        named = {detector.name: result, **dict(result.components)}
        for name, res in named.items():
            what = f"{name} on {series.name}"
            scored = _check_scores(what, res.scores, len(stream))
            if scored.min(initial=0.0) < 0.0 or scored.max(initial=0.0) > 1.0:
                raise EvaluationError(f"{what}: scores outside [0, 1]")
            full = np.zeros(series.rows)
            full[series.probation :] = scored
            out.setdefault(name, {})[series.name] = full
        if on_file is not None:
            on_file(series.name, time.perf_counter() - file_started)
    return CorpusRun(scores=out, seconds=time.perf_counter() - started, failed=failed)


def evaluate_online(
    corpus: NabCorpus,
    make_detector: Callable[[], _Detector],
    profiles: Sequence[Profile] = NAB_PROFILES,
    *,
    on_file: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, NabReport], float]:
    """``run_online`` then ``evaluate_scores`` for the detector and each of its components.

    Returns:
        (detector name -> report, seconds spent running the detectors).
    """
    run = run_online(corpus, make_detector, on_file=on_file)
    if run.failed:
        corpus = NabCorpus(series=tuple(s for s in corpus.series if s.name not in run.failed))
    if not corpus.series:
        raise EvaluationError(f"the detector failed on every file: {run.failed}")
    failed = tuple(sorted(run.failed.items()))
    reports = {
        name: replace(evaluate_scores(corpus, scores, profiles), failed_files=failed)
        for name, scores in run.scores.items()
    }
    return reports, run.seconds
