"""The promotion gate: the best of the evaluated candidates, the simple baseline included.

Pure: evaluation numbers in, a decision out; the training asset registers the winner and moves
the ``champion`` alias to it. The rule:

1. Every candidate (the simple baseline, the configured model, the current champion's
   configuration) is evaluated on the same data. Besides its metric on the whole evaluation
   it has the same metric on ``B`` bootstrap resamples of the evaluation's units (series),
   drawn once and shared by all candidates, so differences between candidates are paired.
2. Candidates are taken simplest first (``complexity``); at equal complexity the incumbent
   (the champion's configuration) comes first, so an equal challenger does not churn it.
3. The simplest candidate with a finite metric holds the title. Each next candidate takes it
   only when its advantage over the holder (metric difference, in the better direction)
   exceeds ``noise_multiple`` (default 2) times the run-to-run noise of that difference: its
   standard deviation over the bootstrap resamples. A more complex model that is not better
   beyond the noise of the evaluation is not worth its cost, and choosing it would make the
   verdict depend on which series happened to be in the window.
4. A gate may judge on more than one evaluation (the detector: injected spikes and injected
   subtle shifts). Each candidate then carries the other metrics too (``others``, higher is
   better, same resamples), and a challenger takes the title when it wins beyond the noise
   on at least one metric and loses beyond the noise on none; with a false-alarm budget it
   may add at most the budget to the holder's false alarms (a more sensitive model buys its
   recall with alarms, and the budget says how many it may spend). False alarms are counts,
   and a week holds few of them: the budget is judged like the other losses, so a challenger
   is over it only when its excess (its false alarms minus the holder's and the budget)
   exceeds ``noise_multiple`` times the bootstrap sd of the paired difference, where both
   carry resampled false alarms (same resamples as the other metrics). Without that, two
   alarms more or fewer in a week of a few thousand series-hours flipped the verdict. In the
   same way a gate may give a metric a tolerance (``tolerances``: a non-inferiority margin,
   like the false-alarm budget): a loss counts only past the noise margin plus the
   tolerance, so a difference too small to matter (an AUC 0.001 lower, resolved beyond its
   noise because paired resamples of the same series are tight) refuses nothing. Tolerances
   never help a challenger win.
5. With no finite candidate there is no winner; the caller fails the run (an evaluation that
   produced no number must not publish a model).

A fresh install therefore always has a champion (the baseline, at worst), and the verdict is
deterministic given the data: resamples come from a seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Default: a challenger must win by more than twice the bootstrap standard deviation of its
#: advantage (about a one-sided 97.5% bar for a normal spread).
NOISE_MULTIPLE = 2.0
RESAMPLES = 200


def bootstrap_weights(units: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, units)`` multiplicities of a seeded bootstrap over ``units`` units.

    Row ``r`` says how often each unit is drawn in resample ``r`` (rows sum to ``units``).
    Weighting a per-unit statistic by a row is the same as recomputing it on the resample.
    """
    if units <= 0:
        return np.zeros((resamples, 0), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return rng.multinomial(units, np.full(units, 1.0 / units), size=resamples)


def weighted_mean_replicates(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of the finite ``values`` (one per unit) under each row of ``weights``."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    w = weights[:, finite].astype(float)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, w @ values[finite] / np.where(total > 0, total, 1), np.nan)


@dataclass(frozen=True)
class GateCandidate:
    """One evaluated candidate.

    Attributes:
        name: how the run and the decision name it (``baseline``, ``candidate``, ``champion``).
        complexity: lower is simpler (e.g. the cost of its members).
        value: the gate metric on the whole evaluation.
        replicates: the gate metric on each bootstrap resample (same resamples for all).
        incumbent: the current champion's configuration.
        others: further gate metrics (higher is better): name -> (value, replicates).
        false_alarms: false alarms per 1,000 series-hours, judged against a budget.
        false_alarm_replicates: the same on each bootstrap resample (``None``: not resampled;
            the budget is then judged on the values alone).
    """

    name: str
    complexity: float
    value: float
    replicates: np.ndarray = field(repr=False)
    incumbent: bool = False
    others: Mapping[str, tuple[float, np.ndarray]] = field(default_factory=dict, repr=False)
    false_alarms: float = math.nan
    false_alarm_replicates: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Comparison:
    """A challenger against the holder of the title at that step (``others``: the same for
    the further metrics, as (metric, advantage, noise, margin))."""

    challenger: str
    holder: str
    advantage: float
    noise: float
    margin: float
    replaced: bool
    others: tuple[tuple[str, float, float, float], ...] = ()
    #: Per metric, the loss it may show beyond the noise margin (``choose_best``'s tolerances).
    tolerances: tuple[tuple[str, float], ...] = ()
    over_budget: bool = False
    #: (challenger's, holder's, budget) false alarms per 1,000 series-hours, when judged.
    false_alarms: tuple[float, float, float] | None = None
    #: The margin the excess over the budget must pass to refuse the challenger (0 when the
    #: false alarms were not resampled) and its noise sd.
    false_alarm_margin: float = 0.0
    false_alarm_noise: float = 0.0

    def describe(self, metric: str) -> str:
        verdict = "takes over" if self.replaced else "does not"
        tolerated = dict(self.tolerances)
        parts = [
            f"{name} advantage {advantage:+.4g}, needed > {margin:.4g} (noise sd {noise:.4g}"
            + (f", a loss past {-(margin + tolerated[name]):.4g}" if name in tolerated else "")
            + ")"
            for name, advantage, noise, margin in (
                (metric, self.advantage, self.noise, self.margin),
                *self.others,
            )
        ]
        budget = ""
        if self.false_alarms is not None:
            mine, theirs, allowed = self.false_alarms
            within = "over" if self.over_budget else "within"
            noise = (
                f", excess {mine - theirs - allowed:+.3g}, refused past "
                f"{self.false_alarm_margin:.3g} (noise sd {self.false_alarm_noise:.3g})"
                if self.false_alarm_margin
                else ""
            )
            budget = (
                f"; false alarms {mine:.3g} against {theirs:.3g} + {allowed:g} per 1,000 "
                f"series-hours{noise} ({within} budget)"
            )
        return f"{self.challenger} vs {self.holder}: {', '.join(parts)}{budget}; {verdict}"


@dataclass(frozen=True)
class GateDecision:
    """The winner (``None``: no candidate had a finite metric) and why."""

    winner: str | None
    reason: str
    metric: str
    values: dict[str, float]
    comparisons: tuple[Comparison, ...] = ()

    @property
    def promote(self) -> bool:
        return self.winner is not None

    @property
    def noise(self) -> float:
        """The largest noise sd among the comparisons made (``nan`` with none)."""
        return max((c.noise for c in self.comparisons), default=math.nan)


def choose_best(
    candidates: Sequence[GateCandidate],
    metric: str,
    *,
    lower_is_better: bool,
    noise_multiple: float = NOISE_MULTIPLE,
    false_alarm_budget: float | None = None,
    tolerances: Mapping[str, float] | None = None,
) -> GateDecision:
    """The best candidate by the rule in the module docstring (``false_alarm_budget``: false
    alarms per 1,000 series-hours a challenger may add to its holder's; ``tolerances``: per
    metric, how much worse than the holder beyond the noise margin still is no loss)."""
    tolerated = {name: float(t) for name, t in (tolerances or {}).items() if t}
    values = {c.name: c.value for c in candidates}
    ordered = sorted(
        (c for c in candidates if math.isfinite(c.value)),
        key=lambda c: (c.complexity, not c.incumbent),
    )
    unusable = [c.name for c in candidates if not math.isfinite(c.value)]
    if not ordered:
        return GateDecision(None, f"no candidate has a finite {metric}", metric, values)
    sign = -1.0 if lower_is_better else 1.0
    holder = ordered[0]
    comparisons = []
    for challenger in ordered[1:]:
        advantage, noise, margin = _paired(
            sign * challenger.value,
            sign * np.asarray(challenger.replicates),
            sign * holder.value,
            sign * np.asarray(holder.replicates),
            noise_multiple,
        )
        others = tuple(
            (name, *_paired(*challenger.others[name], *holder.others[name], noise_multiple))
            for name in sorted(set(challenger.others) & set(holder.others))
            # A metric one of them has no number for (no cases) decides nothing.
            if math.isfinite(challenger.others[name][0]) and math.isfinite(holder.others[name][0])
        )
        steps = [(metric, advantage, margin), *((n, a, m) for n, a, _, m in others)]
        wins = any(a > m and a > 0 for _, a, m in steps)
        losses = any(not a >= -(m + tolerated.get(n, 0.0)) for n, a, m in steps)
        holder_alarms = holder.false_alarms if math.isfinite(holder.false_alarms) else 0.0
        budget = (
            (challenger.false_alarms, holder_alarms, false_alarm_budget)
            if false_alarm_budget is not None and math.isfinite(challenger.false_alarms)
            else None
        )
        alarm_noise, alarm_margin = _alarm_noise(challenger, holder, noise_multiple)
        over_budget = budget is not None and budget[0] - budget[1] - budget[2] > alarm_margin
        replaced = wins and not losses and not over_budget
        comparisons.append(
            Comparison(
                challenger.name,
                holder.name,
                advantage,
                noise,
                margin,
                replaced,
                others,
                tuple((n, tolerated[n]) for n, _, _ in steps if n in tolerated),
                over_budget,
                budget,
                alarm_margin,
                alarm_noise,
            )
        )
        if replaced:
            holder = challenger
    steps = "; ".join(c.describe(metric) for c in comparisons)
    reason = f"{holder.name} chosen ({metric}={holder.value:.4g})"
    if steps:
        reason += f": {steps}"
    if unusable:
        reason += f"; without a finite {metric}: {', '.join(unusable)}"
    return GateDecision(holder.name, reason, metric, values, tuple(comparisons))


def _paired(
    value: float,
    replicates: np.ndarray,
    holder_value: float,
    holder_replicates: np.ndarray,
    noise_multiple: float,
) -> tuple[float, float, float]:
    """Advantage (higher is better), its bootstrap sd and the margin it must exceed."""
    advantage = float(value - holder_value)
    diffs = np.asarray(replicates, dtype=float) - np.asarray(holder_replicates, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    # One resample or none measures no spread: such a challenger can never prove itself.
    noise = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.inf
    return advantage, noise, noise_multiple * noise


def _alarm_noise(
    challenger: GateCandidate, holder: GateCandidate, noise_multiple: float
) -> tuple[float, float]:
    """The bootstrap sd of the challenger's false alarms minus the holder's and the margin
    their excess over the budget must pass; (0, 0) when the challenger's were not resampled.
    A holder without resampled false alarms counts as none on every resample."""
    if challenger.false_alarm_replicates is None:
        return 0.0, 0.0
    mine = np.asarray(challenger.false_alarm_replicates, dtype=float)
    theirs = (
        np.asarray(holder.false_alarm_replicates, dtype=float)
        if holder.false_alarm_replicates is not None
        else np.zeros_like(mine)
    )
    diffs = mine - theirs
    diffs = diffs[np.isfinite(diffs)]
    noise = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    return noise, noise_multiple * noise


def replicates_of(statistic: Callable[[np.ndarray], float], weights: np.ndarray) -> np.ndarray:
    """``statistic(row)`` for every row of ``weights`` (a per-unit weight vector each)."""
    return np.array([statistic(row) for row in weights], dtype=float)
