"""Operators, their sessions and the login throttle, in SQL."""

from __future__ import annotations

from services.ops.auth.domain import LiveSession, OperatorAccount, Role
from services.ops.settings import LoginThrottle
from shared.columns import column_list
from shared.db import Connection


async def create_operator(connection: Connection, username: str, password_hash: str, role: Role) -> bool:
    """False when the username is taken."""
    created = await connection.fetchval(
        "INSERT INTO operators (username, password_hash, role) VALUES ($1, $2, $3)"
        " ON CONFLICT (username) DO NOTHING RETURNING true",
        username,
        password_hash,
        role.value,
    )
    return bool(created)


async def get_operator(connection: Connection, username: str) -> OperatorAccount | None:
    row = await connection.fetchrow(
        f"SELECT {column_list(OperatorAccount)} FROM operators"  # noqa: S608 - columns of a model
        " WHERE username = $1 AND disabled_at IS NULL",
        username,
    )
    return OperatorAccount.model_validate(dict(row)) if row else None


async def update_password_hash(connection: Connection, username: str, password_hash: str) -> None:
    await connection.execute("UPDATE operators SET password_hash = $2 WHERE username = $1", username, password_hash)


async def claim_login_try(connection: Connection, client: str, username: str, throttle: LoginThrottle) -> float | None:
    """Count a try of (client, username) as failed in advance, unless that pair must still wait: None then.

    Returns how long the pair must wait after this try if it fails. One statement, so parallel guesses each
    see the ones before them; a success forgets the pair (:func:`forget_login_failures`).
    """
    wait = await connection.fetchval(
        "WITH capped AS ("
        " SELECT count(*) >= $3 AS over FROM login_attempts"
        " WHERE NOT succeeded AND at > clock_timestamp() - make_interval(secs => $4))"
        " INSERT INTO login_throttle AS t (client, username, failures, next_allowed_at)"
        " VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => CASE"
        "  WHEN (SELECT over FROM capped) THEN $7 WHEN 1 < $5 THEN 0 ELSE $6 END))"
        " ON CONFLICT (client, username) DO UPDATE SET"
        "  failures = t.failures + 1,"
        "  next_allowed_at = clock_timestamp() + make_interval(secs => CASE"
        "   WHEN (SELECT over FROM capped) THEN $7"
        "   WHEN t.failures + 1 < $5 THEN 0"
        "   ELSE least($7, $6 * 2 ^ least(t.failures + 1 - $5, 30)) END)"
        " WHERE t.next_allowed_at <= clock_timestamp()"
        " RETURNING extract(epoch FROM next_allowed_at - clock_timestamp())",
        client,
        username,
        throttle.global_failure_cap,
        throttle.window_seconds,
        throttle.free_failures,
        throttle.base_delay_seconds,
        throttle.max_delay_seconds,
    )
    return None if wait is None else max(0.0, float(wait))


async def login_wait_seconds(connection: Connection, client: str, username: str) -> float:
    value = await connection.fetchval(
        "SELECT extract(epoch FROM next_allowed_at - clock_timestamp()) FROM login_throttle"
        " WHERE client = $1 AND username = $2",
        client,
        username,
    )
    return max(0.0, float(value or 0))


async def forget_login_failures(connection: Connection, client: str, username: str) -> None:
    await connection.execute("DELETE FROM login_throttle WHERE client = $1 AND username = $2", client, username)


async def record_login_attempt(connection: Connection, username: str, client: str, *, succeeded: bool) -> None:
    await connection.execute(
        "INSERT INTO login_attempts (username, client, succeeded) VALUES ($1, $2, $3)", username, client, succeeded
    )


async def create_session(connection: Connection, session_id: str, username: str, csrf_token: str, hours: float) -> None:
    await connection.execute(
        "INSERT INTO sessions (session_id, username, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        session_id,
        username,
        csrf_token,
        hours * 3600,
    )


async def get_session(connection: Connection, session_id: str) -> LiveSession | None:
    """The live session with its operator, or None when it expired, ended or its operator was disabled."""
    row = await connection.fetchrow(
        f"SELECT {column_list(LiveSession)} FROM sessions JOIN operators USING (username)"  # noqa: S608 - columns
        " WHERE session_id = $1 AND ended_at IS NULL AND expires_at > now() AND disabled_at IS NULL",
        session_id,
    )
    return LiveSession.model_validate(dict(row)) if row else None


async def end_session(connection: Connection, session_id: str) -> None:
    await connection.execute("UPDATE sessions SET ended_at = now() WHERE session_id = $1", session_id)


async def prune(connection: Connection, *, keep_days: int = 30) -> None:
    """Forget login attempts older than a day and sessions long over; the audit log is kept."""
    await connection.execute("DELETE FROM login_attempts WHERE at < now() - interval '1 day'")
    await connection.execute("DELETE FROM login_throttle WHERE next_allowed_at < now() - interval '1 day'")
    await connection.execute(
        "DELETE FROM sessions WHERE coalesce(ended_at, expires_at) < now() - make_interval(days => $1)", keep_days
    )
