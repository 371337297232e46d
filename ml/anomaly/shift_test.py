"""Subtle sustained shifts in a route's per-request metrics: a volume-weighted CUSUM.

The detectors score each hour against the hours before it, one metric at a time: a latency p95
x1.3, a cost per request +30% or an error rate of 3% on one route moves its hourly values by
about the hour-to-hour noise, and hourly cost totals move with traffic far more than with price.
Two things make those shifts visible:

* Per-request quantities, weighted by volume. Latency p95, error rate and cost per request (the
  route's cost over its request count, read across two of its metrics) do not follow the traffic
  cycle, and their noise in an hour shrinks as ``1 / sqrt(requests)``. ``z_t = (x_t - m_t) *
  sqrt(n_t) / sigma`` then has the same spread in a busy and a quiet hour, with ``m_t`` the
  median of the route's last ``window`` judged hours ending ``gap`` hours before ``t`` (lagging,
  so a drift shows) and ``sigma`` the robust spread of ``(x - m) * sqrt(n)`` on the history.
* Two metrics at once where a change moves both: a slower model multiplies latency and time to
  first token alike, so latency is tested on the combined z-score of both (``combine_scores``).
* Counts for rates. An error rate is tested as counts: the errors of the last 1-8 hours
  against the route's own reference rate, an exact conditional binomial test (``rate_scan``,
  rules 1), or a binomial CUSUM tuned to a rise of 2.5 points with the hour's requests as its
  exposure (``rate_cusum``, rules 2 and 3; rules 4 tune it to 2 points and hold it two hours).
* Geometric means (rules 3 and 4: ``SHIFT_RULES``). Request costs and latencies are right-skewed, so
  cost per request and latency are tested as the hour's mean of the logs of its requests'
  values, not an arithmetic mean or a p95 that its largest requests pull about.
* The log scale for percentiles (rules 2). A slowdown multiplies a p95, and a p95 of few
  requests lies below one of many: latency and cost per request are tested as logs with the
  route's own slope on ``log n`` taken out (``volume_adjusted``).
* Accumulation. Page's two-sided CUSUM, ``S_t = max(0, S_{t-1} + z_t - k)`` (and the mirror for
  a fall), adds the evidence of consecutive hours; ``z`` is clipped at ``c`` so one outlier never
  makes a shift. An alarm when ``S >= h`` restarts the sum, so a shift that persists alarms
  again only after as much new evidence.

``k`` = 1 tunes the test to shifts of about two sigmas; ``h`` = 8 (the default) keeps the
in-control run length of Gaussian noise (two-sided) in the tens of thousands of hours; the route
metrics use lower levels that spend the false-alarm budget (``SHIFT_METRICS``). Hours with fewer
than ``min_requests`` requests are not judged and leave the sums as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import binom

#: Robust sigma of a Gaussian from its MAD.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ShiftTest:
    """Per point: the CUSUM statistic, the 0-1 score (0.5 at the alarm level), the reference
    level and whether an alarm was raised."""

    statistic: np.ndarray
    score: np.ndarray
    expected: np.ndarray
    is_shift: np.ndarray


def _standardised(
    values: np.ndarray,
    requests: np.ndarray,
    start: int,
    window: int,
    gap: int,
    clip: float,
    min_requests: int,
    proportion: bool,
    volume_slope: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per hour: the volume-weighted z-score against the lagged reference (0 where not
    judged, clipped at ``clip``), the reference, and whether the hour is judged; and the
    per-request spread ``sigma`` the z-scores are divided by (inf without history)."""
    x = np.asarray(values, dtype=float)
    n = np.asarray(requests, dtype=float)
    if x.shape != n.shape:
        raise ValueError("values and requests differ in shape")
    slope = None
    if volume_slope is not None:
        x, slope = volume_adjusted(x, n, start, min_requests, volume_slope)
    judged = np.isfinite(x) & (n >= min_requests)
    points = np.flatnonzero(judged)
    expected = np.full(len(x), np.nan)
    # The reference of each hour: the median of the last `window` judged hours before t - gap.
    for t in points:
        usable = np.searchsorted(points, t - gap, side="left")
        if usable >= 3:
            past = points[max(0, usable - window) : usable]
            # A low rate's hours are mostly zeros, so its median is 0: pool the proportion.
            expected[t] = (
                np.sum(x[past] * n[past]) / np.sum(n[past]) if proportion else np.median(x[past])
            )
    weighted = (x - expected) * np.sqrt(np.where(judged, n, 0.0))
    if proportion:
        rate = np.clip(expected, 0.005, 0.995)
        weighted = weighted / np.sqrt(rate * (1.0 - rate))
    history = weighted[:start][np.isfinite(weighted[:start])]
    if proportion:
        sigma = 1.0 if len(history) >= 10 else np.inf
    elif len(history) >= 10:
        centre = np.median(history)
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(history - centre)))
        sigma = max(sigma, 0.5 * float(np.std(history)), 1e-12)
    else:
        sigma = np.inf
    z = np.clip(np.nan_to_num(weighted / sigma, nan=0.0), -clip, clip)
    active = np.isfinite(weighted)
    if slope is not None:
        # Back on the metric's scale: the reference level at this hour's request count.
        expected = np.exp(expected + slope * np.log(np.maximum(n, 1.0)))
    return z, expected, active, float(sigma)


def volume_adjusted(
    values: np.ndarray, requests: np.ndarray, start: int, min_requests: int, max_slope: float
) -> tuple[np.ndarray, float]:
    """A sample percentile on the log scale with the effect of the hour's request count taken
    out: ``log x - b log n``.

    An hourly p95 is the 95th percentile of that hour's requests, and on a right-skewed
    latency a percentile of a small sample lies below the percentile of a large one (at 10-15
    requests about 4% below a route's median hour, at 50-130 about 2% above it: the hours of
    seeds 0-9's training weeks). A route's reference median pools quiet and busy hours, so a
    busy weekday after a quiet weekend reads as a slowdown of a few percent an hour, which the
    CUSUM accumulates. ``b`` is the least-squares slope of ``log x`` on ``log n`` over the
    route's judged history (``values[:start]``), kept in ``[0, max_slope]`` (0 with fewer than
    24 judged hours or no spread of volume); the log scale makes a slowdown ``x f`` the same
    shift ``log f`` on every route.

    Returns:
        ``log x - b log n`` (NaN where ``x`` or ``n`` is not positive) and ``b``.
    """
    x = np.asarray(values, dtype=float)
    n = np.asarray(requests, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.where((x > 0) & (n > 0), np.log(np.where(x > 0, x, 1.0)), np.nan)
        log_n = np.log(np.maximum(n, 1.0))
    history = np.isfinite(logged[:start]) & (n[:start] >= min_requests)
    slope = 0.0
    if history.sum() >= 24 and np.std(log_n[:start][history]) > 0:
        slope = float(np.polyfit(log_n[:start][history], logged[:start][history], 1)[0])
    slope = min(max(slope, 0.0), max_slope)
    return logged - slope * log_n, slope


def combine_scores(
    z: np.ndarray, active: np.ndarray, other: np.ndarray, other_active: np.ndarray, start: int
) -> np.ndarray:
    """One z-score per hour from two metrics of a route that a slowdown moves together.

    A slower model multiplies both its latency and its time to first token, while their
    hour-to-hour noise is only partly shared: ``(z1 + z2) / sqrt(2 (1 + rho))``, with ``rho``
    their correlation on the history, has unit spread in a healthy hour and carries a common
    shift ``d`` as ``d * sqrt(2 / (1 + rho))``. Hours where the second metric is not judged keep
    the first's score. On evaluation seeds 0-7 this found 14 of 16 subtle latency shifts and
    drifts where latency alone found 10, at the same number of clean hours over the alarm.
    """
    both = active & other_active
    history = both[:start]
    if history.sum() < 10 or np.std(z[:start][history]) == 0 or np.std(other[:start][history]) == 0:
        return z
    rho = float(np.corrcoef(z[:start][history], other[:start][history])[0, 1])
    if not np.isfinite(rho):
        return z
    rho = min(max(rho, 0.0), 1.0)
    return np.where(both, (z + other) / np.sqrt(2.0 * (1.0 + rho)), z)


def volume_cusum(
    values: np.ndarray,
    requests: np.ndarray,
    start: int,
    *,
    window: int = 72,
    gap: int = 12,
    allowance: float = 1.0,
    clip: float = 4.0,
    alarm: float = 8.0,
    min_requests: int = 20,
    proportion: bool = False,
    companion: np.ndarray | None = None,
    confirm: int = 1,
    volume_slope: float | None = None,
    shift: float | None = None,
    fall_alarm: float | None = None,
) -> ShiftTest:
    """The CUSUM of ``values[start:]`` (per-request quantities) with ``values[:start]`` as
    history: the spread is learned there and the sums run through it.

    Without ``shift`` each judged hour adds ``z_t - allowance`` whatever its volume, so the test
    is tuned to a shift of two hourly sigmas: on a route of 15 requests an hour a cost +30% is
    about one sigma an hour and never outgrows the allowance. With ``shift`` (rules 4) each hour
    adds the log-likelihood ratio of its ``n_t`` requests for a shift of ``shift`` per request
    (on the values' scale) against none: with ``d = shift / sigma`` (``sigma`` the per-request
    spread), ``d sqrt(n_t) z_t - n_t d^2 / 2``, ``z_t`` clipped at ``clip + d sqrt(n_t) / 2``
    (an outlier hour adds at most ``clip`` sigmas beyond a shifted one's). The sum is then in
    nats and a quiet hour adds its few requests' evidence, not a whole allowance's deficit.

    Args:
        values: hourly per-request metric (NaN where unmeasured).
        requests: the route's requests in the same hours.
        start: first point reported.
        proportion: ``values`` are proportions (error rates): the per-request spread is the
            binomial ``sqrt(p (1 - p))`` of the reference ``p`` (floored at 0.5%) and ``p`` is the
            pooled rate of the reference hours, since the hours of a low rate are mostly zeros
            and their median and robust spread are none.
        companion: a second per-request metric that moves with ``values`` when the route
            changes (time to first token beside latency): see ``combine_scores``.
        confirm: judged hours in a row the statistic must stay at or above ``alarm`` before
            the alarm is raised (at the last of them; 1: at the first crossing).
        volume_slope: None tests ``values`` as they are; a number tests them on the log scale
            with the effect of the hour's request count taken out (``volume_adjusted``, the
            slope at most this), the companion alike. ``expected`` stays on the values' scale.
        shift: None for the allowance form; a positive number for the likelihood-ratio form
            tuned to a shift of this size per request, either way (``alarm`` then in nats;
            ``allowance`` unused; no ``companion``).
        fall_alarm: the level the sum of a fall must reach (None: ``alarm``, as a rise).

    Returns:
        A ``ShiftTest`` of the points from ``start`` on.

    Raises:
        ValueError: ``confirm`` < 1, ``shift`` not positive, or ``shift`` with a companion.
    """
    if confirm < 1:
        raise ValueError("confirm must be >= 1")
    if shift is not None and (not shift > 0 or companion is not None):
        raise ValueError("shift must be positive and goes without a companion")
    z, expected, active, sigma = _standardised(
        values,
        requests,
        start,
        window,
        gap,
        clip if shift is None else np.inf,
        min_requests,
        proportion,
        volume_slope,
    )
    if companion is not None:
        other, _, other_active, _ = _standardised(
            companion, requests, start, window, gap, clip, min_requests, False, volume_slope
        )
        z = combine_scores(z, active, other, other_active, start)
    if shift is None:
        rise, fall = z - allowance, -z - allowance
    else:
        n = np.nan_to_num(np.asarray(requests, dtype=float), nan=0.0)
        root = (shift / sigma) * np.sqrt(np.maximum(n, 0.0))
        bounded = np.clip(z, -(clip + root / 2), clip + root / 2)
        rise, fall = root * bounded - root**2 / 2, -root * bounded - root**2 / 2
    fall_level = alarm if fall_alarm is None else fall_alarm
    upper = lower = 0.0
    above = 0
    statistic = np.zeros(len(z))
    # Each side's sum over its own alarm level: the score is 0.5 where either reaches it.
    reached = np.zeros(len(z))
    alarms = np.zeros(len(z), dtype=bool)
    for t in range(len(z)):
        if active[t]:
            upper = max(0.0, upper + rise[t])
            lower = max(0.0, lower + fall[t])
        statistic[t] = max(upper, lower)
        reached[t] = max(upper / alarm, lower / fall_level)
        if not active[t]:
            continue
        above = above + 1 if reached[t] >= 1.0 else 0
        if above >= confirm:
            alarms[t] = t >= start
            upper = lower = 0.0
            above = 0
    score = np.clip(0.5 * reached, 0.0, 1.0)
    score[alarms] = np.maximum(score[alarms], 0.5)
    return ShiftTest(
        statistic=statistic[start:],
        score=score[start:],
        expected=expected[start:],
        is_shift=alarms[start:],
    )


#: The rate scan's defaults (tuned on evaluation seeds 0-9, never on the held-out 10-14). The
#: alpha was 1e-4 until the false-alarm budget (0.5 per 1,000 series-hours) was spent on purpose:
#: at 3e-4 seeds 0-9 find 4 of 10 subtle error rates instead of 3, for 9 more false alarms
#: in 242,000 series-hours; 1e-3 finds no more and adds 32.
RATE_WINDOW = 168
RATE_GAP = 12
RATE_MAX_SPAN = 8
RATE_ALPHA = 3e-4


def _reference_counts(
    errors: np.ndarray, requests: np.ndarray, window: int, gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative errors and requests (a leading 0), and per hour ``t`` the errors and
    requests of the reference span, the ``window`` hours ending ``gap`` hours before ``t``."""
    size = len(errors)
    ce = np.concatenate([[0.0], np.cumsum(errors)])
    cn = np.concatenate([[0.0], np.cumsum(requests)])
    t = np.arange(size)
    hi = np.clip(t - gap, 0, size)
    lo = np.clip(t - gap - window, 0, size)
    return ce, cn, ce[hi] - ce[lo], cn[hi] - cn[lo]


def rate_scan(
    errors: np.ndarray,
    requests: np.ndarray,
    start: int,
    *,
    window: int = RATE_WINDOW,
    gap: int = RATE_GAP,
    max_span: int = RATE_MAX_SPAN,
    alpha: float = RATE_ALPHA,
    confirm: int = 1,
) -> ShiftTest:
    """A count test of a route's errors against its own baseline rate, accumulated over spans
    of consecutive hours.

    The errors of a healthy route are binomial around a rate its history knows: with ``E_w``
    errors in ``N_w`` requests over the last ``L`` hours and ``E_r`` in ``N_r`` over the
    ``window`` hours ending ``gap`` hours before them (the reference), the errors are, if the
    rate did not change, ``E_w | E_w + E_r ~ Binomial(E_w + E_r, N_w / (N_w + N_r))``: the exact
    conditional test of two Poisson rates, which carries the uncertainty of the reference rate
    (a route with little history gets a weak test, never a false one). Its upper tail
    ``P(X >= E_w)`` is taken for every span ``L`` = 1..``max_span`` ending at each hour (a 3%
    rate on a route of 40 requests an hour is invisible in one hour and plain over six); an
    hour alarms when the smallest of them is below ``alpha``. Spans never reach back over an
    alarm, so a persisting rise alarms again only on new evidence. Only rises are tested.

    Args:
        errors: error count per hour (NaN or 0 where idle).
        requests: requests per hour.
        start: first point reported; the points before are history only.
        window, gap: the reference span and its distance from the tested hour.
        max_span: the longest run of hours accumulated.
        alpha: the per-hour significance of an alarm (the smallest p over the spans).
        confirm: hours with requests in a row whose smallest p must be below ``alpha`` before
            the alarm is raised (at the last of them; 1: at the first).

    Returns:
        A ``ShiftTest``: ``statistic`` is ``-log10`` of the smallest p, ``expected`` the
        reference rate, ``score`` 0.5 at ``alpha``.
    """
    e = np.nan_to_num(np.asarray(errors, dtype=float), nan=0.0)
    n = np.nan_to_num(np.asarray(requests, dtype=float), nan=0.0)
    if e.shape != n.shape:
        raise ValueError("errors and requests differ in shape")
    if not 0 < alpha < 1 or max_span < 1 or window < 1 or gap < max_span - 1 or confirm < 1:
        raise ValueError(
            "need 0 < alpha < 1, max_span >= 1, window >= 1, gap >= max_span - 1, confirm >= 1"
        )
    size = len(e)
    ce, cn, e_ref, n_ref = _reference_counts(e, n, window, gap)
    t = np.arange(size)
    # p[t, L - 1]: the span of L hours ending at t.
    p = np.ones((size, max_span))
    for span in range(1, max_span + 1):
        lo = np.clip(t + 1 - span, 0, size)
        e_w = ce[t + 1] - ce[lo]
        n_w = cn[t + 1] - cn[lo]
        ok = (n_w > 0) & (n_ref > 0) & (e_w > 0) & (t + 1 - span >= 0)
        share = np.where(ok, n_w / np.maximum(n_w + n_ref, 1.0), 0.5)
        p[:, span - 1] = np.where(ok, binom.sf(e_w - 1, (e_w + e_ref).astype(np.int64), share), 1.0)
    minimum = np.ones(size)
    alarms = np.zeros(size, dtype=bool)
    last = -1
    run = 0
    for hour in range(size):
        spans = min(max_span, hour - last)
        minimum[hour] = p[hour, :spans].min() if n[hour] > 0 else 1.0
        if n[hour] <= 0:
            continue
        run = run + 1 if minimum[hour] < alpha else 0
        if run >= confirm:
            alarms[hour] = hour >= start
            last = hour
            run = 0
    statistic = -np.log10(np.clip(minimum, 1e-300, 1.0))
    score = np.clip(0.5 * statistic / -np.log10(alpha), 0.0, 1.0)
    expected = np.where(n_ref > 0, e_ref / np.maximum(n_ref, 1.0), np.nan)
    return ShiftTest(
        statistic=statistic[start:],
        score=score[start:],
        expected=expected[start:],
        is_shift=alarms[start:],
    )


#: The error-count CUSUM's defaults (``SHIFT_RULES`` 2; chosen on evaluation seeds 0-9 only):
#: tuned to a rise of 2.5 points, the middle of the 2-3% rises the rate scan found least often;
#: alarm level 7 (seeds 0-9: the rate scan's 11 false alarms -> 5, the same 4 of 10 subtle
#: error rates and every error storm; at 6, 9 false alarms and no more found; at 7.5, 2 and
#: still 4, with the weakest found one at 7.5 -- too near to keep).
RATE_SHIFT = 0.025
RATE_ALARM = 7.0


def rate_cusum(
    errors: np.ndarray,
    requests: np.ndarray,
    start: int,
    *,
    window: int = RATE_WINDOW,
    gap: int = RATE_GAP,
    shift: float = RATE_SHIFT,
    alarm: float = RATE_ALARM,
    confirm: int = 1,
) -> ShiftTest:
    """A binomial CUSUM of a route's errors against its own reference rate, the requests of
    each hour its exposure.

    The rate scan asks, for every span of 1-8 hours, whether its errors are improbable under
    the reference rate, and pays for asking eight questions; a rise of a few points on a route
    of tens of requests an hour is seen only over several hours, where the scan's smallest p
    stays near its alpha. Page's CUSUM for binomial counts is the optimal sequential test of
    one rate ``p0`` against a raised one ``p1 = p0 + shift`` (Lorden): each hour adds its
    log-likelihood ratio

        ``llr_t = e_t log(p1 / p0) + (n_t - e_t) log((1 - p1) / (1 - p0))``

    and ``S_t = max(0, S_{t-1} + llr_t)`` alarms at ``S_t >= alarm``, then restarts (a rise
    that persists alarms again on new evidence). Any number of requests is used, one request
    weighing what it carries. ``p0`` is the route's own rate over the ``window`` hours ending
    ``gap`` hours before ``t`` (``(E + 1/2) / (N + 1)``, so a route without errors in its
    reference gets a small rate, not zero), kept in [1e-4, 0.5]. Hours without requests or
    without a reference leave the sum as it is. Only rises are tested.

    Args:
        errors: error count per hour (NaN or 0 where idle).
        requests: requests per hour.
        start: first point reported; the points before are history only (the sum runs
            through them).
        window, gap: the reference span and its distance from the tested hour.
        shift: the rise of the rate, in points (0.025: 2.5%), the test is tuned to.
        alarm: the alarm level of ``S``.
        confirm: judged hours in a row ``S`` must stay at or above ``alarm`` before the alarm
            is raised (at the last of them; 1: at the first crossing).

    Returns:
        A ``ShiftTest``: ``statistic`` is ``S``, ``expected`` the reference rate, ``score``
        0.5 at ``alarm``.
    """
    e = np.nan_to_num(np.asarray(errors, dtype=float), nan=0.0)
    n = np.nan_to_num(np.asarray(requests, dtype=float), nan=0.0)
    if e.shape != n.shape:
        raise ValueError("errors and requests differ in shape")
    if not 0 < shift < 0.5 or alarm <= 0 or window < 1 or gap < 0 or confirm < 1:
        raise ValueError("need 0 < shift < 0.5, alarm > 0, window >= 1, gap >= 0, confirm >= 1")
    e = np.minimum(e, n)
    size = len(e)
    _, _, e_ref, n_ref = _reference_counts(e, n, window, gap)
    p0 = np.clip((e_ref + 0.5) / (n_ref + 1.0), 1e-4, 0.5)
    p1 = p0 + shift
    llr = e * np.log(p1 / p0) + (n - e) * np.log((1.0 - p1) / (1.0 - p0))
    judged = (n > 0) & (n_ref > 0)
    statistic = np.zeros(size)
    alarms = np.zeros(size, dtype=bool)
    total = 0.0
    above = 0
    for hour in range(size):
        if judged[hour]:
            total = max(0.0, total + llr[hour])
            above = above + 1 if total >= alarm else 0
        statistic[hour] = total
        if judged[hour] and above >= confirm:
            alarms[hour] = hour >= start
            total = 0.0
            above = 0
    score = np.clip(0.5 * statistic / alarm, 0.0, 1.0)
    score[alarms] = np.maximum(score[alarms], 0.5)
    expected = np.where(n_ref > 0, e_ref / np.maximum(n_ref, 1.0), np.nan)
    return ShiftTest(
        statistic=statistic[start:],
        score=score[start:],
        expected=expected[start:],
        is_shift=alarms[start:],
    )


#: Route metric -> (how the shift test reads it, minimum requests for an hour to be judged,
#: hours of the CUSUM's reference median, the CUSUM's alarm level). Cost is tested per request
#: (its total follows the traffic) and judged from 5 requests. Latency is judged from 10
#: requests (the detector's rule for percentiles is 20): a slowdown that starts at night on a
#: route of 15-30 requests an hour is otherwise seen in one or two hours of its six; the volume
#: weighting already gives those hours their smaller weight. Its reference is the median of 120
#: judged hours (72 before), steadier where the 10-request hours are noisier. The alarm levels
#: spend the false-alarm budget (0.5 per 1,000 series-hours, all detectors and tests together)
#: down to about 0.42 on seeds 0-9, a margin for the spread between seeds: latency 8 -> 6, cost
#: 8 -> 7. Seeds 0-9 (robust baseline + tests): subtle latency 8/10 -> 10/10, subtle recall
#: 0.73 -> 0.80, false alarms 0.314 -> 0.422. Third pass (seeds 0-9, with the spike part
#: recalibrated beside the tests, ``ml.anomaly.fleet.TESTED_THRESHOLD``): latency 6 -> 7, since
#: 11 of its 19 false alarms were between 6 and 7 and no subtle latency shift or drift needed
#: less than 7 (subtle 24/30 either way; false alarms 46 -> 35 in 242,000 series-hours); cost
#: stays at 7 and the rate scan's alpha at 3e-4 (8: one subtle latency lost; 1e-4: one error
#: rate lost). The error rate's volume rule is the rate scan's own (counts, any volume).
SHIFT_METRICS: dict[str, tuple[str, int, int, float]] = {
    "latency_p95_ms": ("value", 10, 120, 7.0),
    "error_rate": ("proportion", 1, RATE_WINDOW, math.nan),
    "cost_usd": ("per_request", 5, 72, 7.0),
}


#: Route metric -> judged hours in a row past the alarm level before a shift alarm is raised.
#: Fourth pass (seeds 0-9): the cost CUSUM's alarm must hold a second judged hour (a shift
#: persists, a run of noisy hours usually falls back): its false alarms 7 -> 3, no cost shift
#: lost, 1 h later. Latency confirmed lost a subtle x1.4 (false alarms 8 -> 7); the rate scan
#: confirmed lost a subtle error rate (11 -> 6), so both alarm at the first crossing.
SHIFT_CONFIRM: dict[str, int] = {"latency_p95_ms": 1, "error_rate": 1, "cost_usd": 2}


#: The revision of the shift tests' rules that new specs take (``DetectorSpec.shift_rules``; a
#: spec stored without it reads back as 1, the rules above, which it was evaluated with).
#: Revision 2 (fifth pass, chosen on evaluation seeds 0-9 only):
#: * Latency p95 and cost per request are tested on the log scale with the effect of the hour's
#:   request count taken out (``volume_adjusted``, slope at most ``VOLUME_SLOPE``). A p95 of 10
#:   requests lies ~4% below a route's median hour and one of 100 ~2% above (seeds 0-9's
#:   training weeks), so busy hours after quiet ones looked slower: 5 of the 8 latency false
#:   alarms of seeds 0-9 were on the Monday after the weekend. Seeds 0-9: latency false alarms
#:   8 -> 2 with the alarm level back at 6 (at 7 a subtle x1.4 was lost), cost per request 3 ->
#:   1 at 7, every subtle latency and cost shift still found.
#: * Error rates by ``rate_cusum`` instead of ``rate_scan``: false alarms 11 -> 5, the same 4 of
#:   10 subtle error rates (the other six put 2-15 errors where 1.6-10 were expected: p of the
#:   excess 0.004-0.24 over their best span, beyond any test at this false-alarm rate).
#:
#: Revision 3 (seventh pass) tests cost per request as the mean of the log costs of the hour's
#: billed requests (a geometric mean: ``cost_log_sum / paid_request_count``, columns of the
#: hourly mart) instead of the log of the arithmetic mean (``geometric_inputs``). Request costs
#: are right-skewed (lognormal token counts; a few long prompts carry an hour's total), so the
#: arithmetic mean of an hour is pulled about by its largest requests; the mean of the logs
#: is not, and a price rise or a prompt that grows by ``f`` moves it by ``log f`` as well.
#: Seeds 0-39's six subtle cost shifts that rules 2 missed (arithmetic CUSUM peaks 1.3-5.9 against
#: the alarm level 7): four found (peaks 8.1-9.8), with no alarm on those seeds' clean hours
#: under either. The mean of logs of 5 or more requests is close to normal, so its CUSUM alarms
#: at 6 (``GEOMETRIC_ALARMS``), still confirmed over a second hour: on seeds 0-9 and 50-79 (all
#: seen before; the level was chosen there) subtle cost 37/40 at 7 -> 39/40 at 6, false alarms
#: 36 -> 39 in 821,000 series-hours. Latency at 5.5 beside it found nothing more for 4 more
#: false alarms.
#: Latency likewise, as the mean of the log latencies of the hour's successful requests with
#: the mean log time to first token beside it (``GEOMETRIC_COMPANIONS``): a p95 of the 10-30
#: requests of a night hour is nearly their maximum, so the subtle slowdowns that start in the
#: evening were the ones missed (fresh seeds 80-99: 4 of 20, CUSUM peaks 4.4-5.7 against the
#: alarm level 6). The mean-log CUSUM (judged from 5 requests) of those four reaches 10.7-12.2,
#: and on the chat routes of seeds 80-84, 87, 89 and 96 (seen; the level was chosen there) it
#: raises no alarm outside the incidents at 10, its alarm level. Error rates are tested as in
#: rules 2.
#: Revision 4 (eighth pass) spends evidence by the request, not by the hour. Cost per request's
#: CUSUM (rules 3) charged every judged hour the same allowance of one sigma, so a route of 10-30
#: requests an hour, where a cost +30% moves the hour's mean log cost by 1-1.8 sigmas, sums
#: little or nothing: its misses were night shifts on such routes. Rules 4 sum each hour's
#: log-likelihood ratio for a rise of ``log 1.25`` per request (``volume_cusum(shift=...)``,
#: ``LIKELIHOOD_SHIFTS``), alarm level 9 nats for a rise (15 for a fall), held a second hour. The
#: error-rate CUSUM is tuned to a rise of 2 points (subtle rises are 2-5% on a base near 1%)
#: and alarms at 6 held a second judged hour (``RATE_RULES``): a run of noise crosses the level
#: and falls back, a raised rate stays over it. Measured with the shift tests alone on the
#: cached traffic of seeds 0-159 (seen: chosen on 0-119, the error level raised from 5.5 after
#: the fresh 150-159 fell short of the false-alarm margin at 5.5), against rules 3:
#: subtle cost 150 -> 153 of 160 for 7 -> 21 false alarms (at 10 nats 151 for 16, at 11 150 for
#: 5); subtle error rates 78 -> 83 of 160 for 43 -> 45 (at 5.5 held: 87 for 80; 2.5 points at
#: 6 at the first crossing, seeds 0-119: 68 of 120 for 92, against 61 for 33). A level that
#: rises with the route's volume (``+ log`` of its requests an hour over 20-50) lost error
#: rates for little: the subtle ones are on the busier routes.
SHIFT_RULES = 4
VOLUME_SLOPE = 0.2
#: Rules 2: route metric -> the alarm level of the log-scale CUSUM (rules 1:
#: ``SHIFT_METRICS``).
LOG_SCALE_ALARMS: dict[str, float] = {"latency_p95_ms": 6.0, "cost_usd": 7.0}


#: Route metric -> the metric tested with it (``combine_scores``).
COMPANIONS: dict[str, str] = {"latency_p95_ms": "time_to_first_token_p95_ms"}

#: Rules 3 and 4: route metric -> the series its test reads instead of its own: the mean of the
#: logs of its requests' values (billed costs; successful requests' latencies) and how many
#: requests that is. ``ml.features`` builds them from the hourly mart's sums and counts.
GEOMETRIC_INPUTS: dict[str, tuple[str, str]] = {
    "cost_usd": ("cost_log_mean", "paid_request_count"),
    "latency_p95_ms": ("latency_log_mean", "latency_log_count"),
}
#: Rules 3 and 4: route metric -> the mean log series tested with its geometric mean
#: (``combine_scores``), in place of ``COMPANIONS``.
GEOMETRIC_COMPANIONS: dict[str, str] = {"latency_p95_ms": "time_to_first_token_log_mean"}
#: Rules 3 (and 4 where ``LIKELIHOOD_SHIFTS`` has no entry): route metric -> the alarm level of
#: its CUSUM on ``GEOMETRIC_INPUTS``.
GEOMETRIC_ALARMS: dict[str, float] = {"cost_usd": 6.0, "latency_p95_ms": 10.0}
#: Rules 3 and 4: an hour's mean log is judged from this many requests (a mean of logs of a few
#: requests is close to normal; a p95 of a few is not).
GEOMETRIC_MIN_REQUESTS = 5
#: Rules 4: route metric -> (the shift per request its likelihood-ratio CUSUM is tuned to, on
#: the log scale; the alarm level of a rise and of a fall, in nats), in place of its
#: ``GEOMETRIC_ALARMS`` level. A fall must reach 15: the mean log cost of a quiet hour has a
#: longer tail below (cache hits bill a fraction of a request), so at 9 the falls add 19 false
#: alarms to the rises' 14 (seeds 0-119); at 15 none on seeds 0-159 (at 12, three). A fall of
#: cost per request is not a spend incident but can be one of quality (a silent switch to a
#: cheaper model), and a sustained one reaches 15 within hours.
LIKELIHOOD_SHIFTS: dict[str, tuple[float, float, float]] = {"cost_usd": (math.log(1.25), 9.0, 15.0)}
#: Shift rules -> the error-rate CUSUM's (rise it is tuned to, alarm level, hours held).
RATE_RULES: dict[int, tuple[float, float, int]] = {
    2: (RATE_SHIFT, RATE_ALARM, 1),
    3: (RATE_SHIFT, RATE_ALARM, 1),
    4: (0.02, 6.0, 2),
}


def read_beside(metric: str, rules: int) -> tuple[tuple[str, str] | None, str | None]:
    """The series the test of ``metric`` reads beside its own values and request counts under
    ``rules``: the ``GEOMETRIC_INPUTS`` (rules 3 and 4; None otherwise) and the companion
    (``GEOMETRIC_COMPANIONS`` with them, else ``COMPANIONS``; None without one)."""
    if rules >= 3 and metric in GEOMETRIC_INPUTS:
        return GEOMETRIC_INPUTS[metric], GEOMETRIC_COMPANIONS.get(metric)
    return None, COMPANIONS.get(metric)


def route_shifts(
    metric: str,
    values: np.ndarray,
    requests: np.ndarray,
    start: int,
    companion: np.ndarray | None = None,
    rules: int = SHIFT_RULES,
    geometric: tuple[np.ndarray, np.ndarray] | None = None,
) -> ShiftTest:
    """The shift test of one route metric of ``SHIFT_METRICS`` (raw values, NaN where idle;
    the route's request counts), reported from ``start``, by the spec's ``rules`` (see
    ``SHIFT_RULES``): an error rate's counts by ``rate_scan`` (1) or ``rate_cusum`` (2-4, as
    ``RATE_RULES`` say), the others by ``volume_cusum`` (with the ``COMPANIONS`` metric's raw
    values when given), on the log scale without the volume effect with rules 2 and up; with
    rules 3 and 4 a metric of ``GEOMETRIC_INPUTS`` (cost, latency) is tested on ``geometric``:
    the hourly mean of its requests' log values and how many requests it averages,
    ``companion`` then being the ``GEOMETRIC_COMPANIONS`` mean log (``expected`` is the
    reference geometric mean); with rules 4 a metric of ``LIKELIHOOD_SHIFTS`` by its
    likelihood-ratio CUSUM.

    Raises:
        ValueError: unknown rules, or rules 3-4 on a ``GEOMETRIC_INPUTS`` metric without
            ``geometric``.
    """
    if rules not in (1, 2, 3, 4):
        raise ValueError(f"shift rules must be 1, 2, 3 or 4, got {rules}")
    mode, min_requests, window, alarm = SHIFT_METRICS[metric]
    confirm = SHIFT_CONFIRM[metric]
    if rules >= 3 and metric in GEOMETRIC_INPUTS:
        if geometric is None:
            raise ValueError(f"shift rules {rules} test {metric} on {GEOMETRIC_INPUTS[metric]}")
        log_mean, counted = geometric
        shift, level, fall_level = None, GEOMETRIC_ALARMS[metric], None
        if rules >= 4 and metric in LIKELIHOOD_SHIFTS:
            shift, level, fall_level = LIKELIHOOD_SHIFTS[metric]
        tested = volume_cusum(
            np.asarray(log_mean, dtype=float),
            np.nan_to_num(np.asarray(counted, dtype=float), nan=0.0),
            start,
            window=window,
            alarm=level,
            min_requests=GEOMETRIC_MIN_REQUESTS,
            companion=None if companion is None else np.asarray(companion, dtype=float),
            confirm=confirm,
            shift=shift,
            fall_alarm=fall_level,
        )
        return replace(tested, expected=np.exp(tested.expected))
    x = np.asarray(values, dtype=float)
    n = np.nan_to_num(np.asarray(requests, dtype=float), nan=0.0)
    if mode == "per_request":
        x = np.where(n > 0, x / np.maximum(n, 1.0), np.nan)
    if mode == "proportion":
        errors = np.rint(np.nan_to_num(x, nan=0.0) * n)
        if rules >= 2:
            rise, level, held = RATE_RULES[rules]
            return rate_cusum(errors, n, start, shift=rise, alarm=level, confirm=held)
        return rate_scan(errors, n, start, confirm=confirm)
    if companion is not None:
        companion = np.asarray(companion, dtype=float)
    return volume_cusum(
        x,
        n,
        start,
        window=window,
        alarm=LOG_SCALE_ALARMS[metric] if rules >= 2 else alarm,
        min_requests=min_requests,
        companion=companion,
        confirm=confirm,
        volume_slope=VOLUME_SLOPE if rules >= 2 else None,
    )
