"""When a feed's burst of urgent changes is a storm (pure: no I/O).

In 2015 a maintenance update of ~15,000 records sent ~8,000 false "released" notices in one evening. So a burst of
urgent changes (releases, escapes, removals, deaths) larger than an agency normally sends is held for a person to
confirm. "Larger than normal" is the largest of three bounds, each set per agency: a floor, a share of the people it
holds, and a multiple of its usual count in such a window over the last week.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from shared.vocabulary import URGENT_STATUSES, CustodyStatus

BASELINE_PERIOD = timedelta(days=7)


@dataclass(frozen=True)
class StormPolicy:
    window_minutes: int = 10
    population_share: float = 0.1
    min_changes: int = 50
    rate_multiple: float = 10.0

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    @property
    def windows_per_baseline(self) -> float:
        return BASELINE_PERIOD / self.window


@dataclass(frozen=True)
class StormCheck:
    """The numbers one decision was made on, kept so an operator can see why a feed was held."""

    urgent_in_window: int
    in_custody: int
    usual_per_window: float
    threshold: int
    policy: StormPolicy

    @property
    def is_storm(self) -> bool:
        return self.urgent_in_window > self.threshold

    def trigger(self) -> str:
        """Why the feed was held, in words for the dashboard."""
        bounds = [
            f"floor {self.policy.min_changes}",
            f"{self.policy.population_share:.0%} of {self.in_custody:,} in custody",
            f"{self.policy.rate_multiple:g}× the usual {self.usual_per_window:.1f}",
        ]
        return (
            f"{self.urgent_in_window:,} urgent changes (releases, escapes, removals, deaths) within "
            f"{self.policy.window_minutes} min; threshold {self.threshold:,} (largest of {', '.join(bounds)})"
        )


def is_urgent(status: CustodyStatus) -> bool:
    return status in URGENT_STATUSES


def check_storm(policy: StormPolicy, *, urgent_in_window: int, in_custody: int, urgent_in_baseline: int) -> StormCheck:
    """``urgent_in_window`` includes the batch being applied; ``urgent_in_baseline`` counts the last week before it."""
    usual_per_window = urgent_in_baseline / policy.windows_per_baseline
    threshold = max(
        policy.min_changes,
        math.ceil(policy.population_share * in_custody),
        math.ceil(policy.rate_multiple * usual_per_window),
    )
    return StormCheck(urgent_in_window, in_custody, usual_per_window, threshold, policy)
