"""From what the provider received (and the delivery history) back to the changes the feed sent: latencies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.bench import cost
from tests.bench.system import Accepted, Handoff, PushStats


def summarise(values: Sequence[float], missing: int = 0) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max and mean, in seconds. ``missing`` notices never arrived: they count as infinitely
    late, so a percentile they reach (and the max and mean) is None rather than flattering."""
    if not values and not missing:
        return {"count": 0, "missing": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    array = np.concatenate([np.asarray(values, dtype=float), np.full(missing, np.inf)])

    def seconds(value: float) -> float | None:
        return round(float(value), 4) if np.isfinite(value) else None

    p50, p95, p99 = np.percentile(array, [50, 95, 99], method="higher")
    return {
        "count": len(values),
        "missing": missing,
        "p50": seconds(p50),
        "p95": seconds(p95),
        "p99": seconds(p99),
        "max": seconds(array.max()),
        "mean": seconds(array.mean()),
    }


@dataclass
class PhaseResult:
    name: str
    rate: float | None
    start: float
    end: float
    subscribers: int
    accepted: dict[int, Accepted]
    pushes: PushStats
    handoffs: list[tuple[float, float]] = field(default_factory=list)
    """(accepted at, feed→hand-off seconds) per notice"""
    delivered: list[float] = field(default_factory=list)
    last_handoff: float | None = None
    drained: bool = False
    cpu_cores: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)
    """PostgreSQL statements per service database during the phase."""

    @classmethod
    def build(
        cls,
        *,
        name: str,
        rate: float | None,
        window: tuple[float, float],
        subscribers: int,
        changes: Mapping[int, Accepted],
        pushes: PushStats,
        handoffs: Sequence[Handoff],
        delivered: Mapping[str, float] | None = None,
    ) -> PhaseResult:
        accepted = {number: change for number, change in changes.items() if change.phase == name}
        result = cls(name, rate, window[0], window[1], subscribers, accepted, pushes)
        seen: set[str] = set()
        for handoff in handoffs:
            change = accepted.get(handoff.change)
            if change is None or handoff.notification_id in seen:
                continue
            seen.add(handoff.notification_id)
            result.handoffs.append((change.at, handoff.at - change.at))
            result.last_handoff = max(result.last_handoff or handoff.at, handoff.at)
            if delivered is not None and handoff.notification_id in delivered:
                result.delivered.append(delivered[handoff.notification_id] - change.at)
        result.handoffs.sort()
        result.drained = len(result.handoffs) >= result.expected
        return result

    @property
    def expected(self) -> int:
        return len(self.accepted) * self.subscribers

    @property
    def window(self) -> float:
        return max(self.end - self.start, 1e-9)

    @property
    def missing(self) -> int:
        return max(0, self.expected - len(self.handoffs))

    @property
    def p99(self) -> float | None:
        """None when the notices that never arrived reach the 99th percentile."""
        value = summarise([latency for _, latency in self.handoffs], self.missing)["p99"]
        return float(value) if value is not None else None

    def sustained(self, p99_limit: float, duration: float) -> bool:
        """Every notice handed off, p99 under the limit, and the feed itself kept up (≥ 95% of the offered rate)."""
        p99 = self.p99
        offered_ok = self.rate is None or len(self.accepted) >= 0.95 * self.rate * duration
        return self.drained and p99 is not None and p99 < p99_limit and offered_ok

    def notices_per_second(self) -> float:
        """Notices of the phase's changes handed off, per second of feeding (what a system that keeps up sends)."""
        return len(self.handoffs) / self.window

    def notices_per_second_to_last(self) -> float:
        """Notices handed off per second from the first push until the last hand-off (the backlog included)."""
        if self.last_handoff is None:
            return 0.0
        return len(self.handoffs) / max(self.last_handoff - self.start, 1e-9)

    def per_second(self) -> list[dict[str, float]]:
        """Feed→hand-off p50/p99 of the notices of the changes accepted in each second of the phase."""
        buckets: dict[int, list[float]] = {}
        for at, latency in self.handoffs:
            buckets.setdefault(int(at - self.start), []).append(latency)
        out = []
        for second, values in sorted(buckets.items()):
            p50, p99 = np.percentile(values, [50, 99])
            out.append(
                {"second": second, "notices": len(values), "p50": round(float(p50), 4), "p99": round(float(p99), 4)}
            )
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "rate_offered": self.rate,
            "window_seconds": round(self.window, 3),
            "feed_requests": self.pushes.requests,
            "feed_requests_failed": self.pushes.failed_requests,
            "feed_request_seconds": summarise(self.pushes.request_seconds),
            "records_sent": self.pushes.records,
            "changes_accepted": len(self.accepted),
            "records_not_accepted": self.pushes.other,
            "changes_per_second": round(len(self.accepted) / self.window, 1),
            "notices_expected": self.expected,
            "notices_handed_off": len(self.handoffs),
            "notices_per_second": round(
                self.notices_per_second() if self.rate is not None else self.notices_per_second_to_last(), 1
            ),
            "notices_per_second_until_last_handoff": round(self.notices_per_second_to_last(), 1),
            "drained": self.drained,
            "drain_seconds": round(self.last_handoff - self.end, 3) if self.last_handoff else None,
            "feed_to_handoff_seconds": summarise([latency for _, latency in self.handoffs], self.missing),
            "feed_to_delivered_seconds": summarise(self.delivered, max(0, self.expected - len(self.delivered)))
            if self.delivered
            else None,
            "cpu_cores": {name: round(value, 2) for name, value in sorted(self.cpu_cores.items())},
            "cpu_ms_per_notice": cost.ms_per_notice(self.cpu_seconds, len(self.handoffs)),
            "round_trips_per_notice": cost.round_trips_per_notice(self.statements, len(self.handoffs)),
            "per_second": self.per_second(),
        }
