"""What the CLI prints, and where: push summaries, agency tables and one line per delivery change, contacts always
masked; results to stdout, progress and errors to stderr."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from cli.feeds import PushSummary
from shared.crypto import mask_email, mask_phone

MASK = "•"

# No markup: feed data (reasons, ids) may contain square brackets that rich would otherwise read as styles.
out = Console(highlight=False, soft_wrap=True, markup=False)
"""Results: what a script captures."""
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
"""Progress and explanations, for the person at the terminal."""


def fail(message: str) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    return typer.Exit(1)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def masked_contact(contact: str | None) -> str:
    """The service already masks contacts; this masks again anything that would reach a terminal in clear."""
    if not contact:
        return "-"
    if MASK in contact:
        return contact
    return mask_email(contact) if "@" in contact else mask_phone(contact)


def summary_line(summary: PushSummary) -> str:
    """``accepted 998 · duplicate 0 · stale 1 · rejected 1``: these four always, any other outcome (sealed) when
    it happened, so JSON pushes and CSV jobs read the same."""
    usual = ("accepted", "duplicate", "stale", "rejected")
    others = sorted(name for name, count in summary.counts.items() if count and name not in usual)
    names = [*usual[:3], *others, usual[3]]
    return " · ".join(f"{name} {summary.counts.get(name, 0)}" for name in names)


def rejection_lines(summary: PushSummary, *, csv: bool, limit: int = 10) -> list[str]:
    where = "row" if csv else "record"
    lines = [
        f"  {where} {rejection.position}"
        + (f" ({rejection.record_id})" if rejection.record_id else "")
        + f": {rejection.reason}"
        for rejection in summary.rejections[:limit]
    ]
    more = summary.rejected - min(len(summary.rejections), limit)
    if more > 0:
        lines.append(f"  … and {more} more")
    return lines


def _clock(value: Any) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def notification_state(notification: dict[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, makes ``delivery tail`` print the notification again."""
    return (notification.get("status"), notification.get("attempt_count"), notification.get("updated_at"))


def notification_line(notification: dict[str, Any]) -> str:
    """time · id · kind · channel · masked contact · status · provider · error, from a ``NotificationView``."""
    attempts: list[dict[str, Any]] = notification.get("attempts") or []
    last = attempts[-1] if attempts else {}
    error = last.get("error_code") or last.get("detail") or notification.get("parked_reason") or "-"
    columns = [
        _clock(notification.get("updated_at")),
        str(notification.get("notification_id", "?")),
        f"{notification.get('kind', '-'):<14}",
        f"{notification.get('channel', '-'):<5}",
        f"{masked_contact(notification.get('contact')):<16}",
        f"{notification.get('status', '-'):<17}",
        f"{last.get('provider') or '-':<10}",
        str(error),
    ]
    return "  ".join(columns).rstrip()


def changed_notifications(
    notifications: list[dict[str, Any]], seen: dict[str, tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """The notifications that are new or changed since ``seen`` (updated in place), oldest first.

    The API lists the newest first; a tail reads better in the order things happened."""
    changed = []
    for notification in reversed(notifications):
        key = str(notification.get("notification_id"))
        state = notification_state(notification)
        if seen.get(key) != state:
            seen[key] = state
            changed.append(notification)
    return changed


def agency_rows(agencies: list[dict[str, Any]], health: list[dict[str, Any]]) -> list[list[str]]:
    """One row per agency for ``agency list``: its settings and how its feed is doing."""
    by_id = {item.get("agency_id"): item for item in health}
    rows = []
    for agency in agencies:
        feed = by_id.get(agency.get("agency_id"), {})
        state = "active" if agency.get("active", True) else "deactivated"
        if agency.get("notices_paused"):
            state += ", paused"
        last_feed = _clock(feed.get("last_feed_at")) if feed.get("last_feed_at") else "never"
        if feed.get("stale"):
            last_feed += " (stale)"
        rows.append(
            [
                str(agency.get("agency_id")),
                str(agency.get("name")),
                str(agency.get("timezone")),
                state,
                last_feed,
            ]
        )
    return rows
