"""Impact score of an incident, 0-100.

    raw = 1.0 * ln(1 + requests / 1000) + 1.5 * ln(1 + excess_usd / 10)
        + 0.5 * ln(1 + duration_h) + 0.8 * ln(1 + tenants - 1) + 0.4 * ln(1 + applications - 1)
        + 0.6 * severity_rank          (info 0, low 1, medium 2, high 3, critical 4)
    score = 100 * (1 - exp(-raw / 4))

Every term is non-decreasing in its input and the map to 0-100 is increasing, so the score is
monotone in each input: more affected requests, more excess cost, a longer incident, more tenants
or applications, or a higher severity never lowers it. Logs keep one huge input from drowning the
others; the cost weight is the largest because spend is what the hub is asked about most.
"""

from __future__ import annotations

import math

from ml.correlation.model import SEVERITIES


def impact_score(
    affected_requests: float,
    excess_usd: float,
    duration_h: float,
    tenants: int,
    applications: int,
    severity: str,
) -> float:
    """The impact score (see the module docstring); negative inputs count as zero."""
    raw = (
        1.0 * math.log1p(max(affected_requests, 0.0) / 1000.0)
        + 1.5 * math.log1p(max(excess_usd, 0.0) / 10.0)
        + 0.5 * math.log1p(max(duration_h, 0.0))
        + 0.8 * math.log1p(max(tenants - 1, 0))
        + 0.4 * math.log1p(max(applications - 1, 0))
        + 0.6 * SEVERITIES.index(severity)
    )
    return round(100.0 * (1.0 - math.exp(-raw / 4.0)), 3)
