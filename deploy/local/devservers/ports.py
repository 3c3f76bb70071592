"""Small helpers shared by the local dev servers: ports, processes, paths.

Kept dependency-free (stdlib only) so that it can be imported from tests,
the CLI and services alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "child_pids",
    "free_port",
    "pid_alive",
    "pid_cmdline",
    "port_is_free",
    "repo_root",
    "run_sync",
    "signal_and_wait",
    "tail",
    "wait_pid_gone",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    There is an unavoidable race between closing the probe socket and the
    server binding the port; in practice the kernel does not hand the same
    ephemeral port out again immediately.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True if nothing is bound to 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: connections of a previous run lingering
        # in TIME_WAIT must not count as "in use", only a live listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def repo_root() -> Path:
    """The project root: ``$CUSTODY_WATCH_HOME`` or the dir holding pyproject.toml and services/ (this package's own
    pyproject.toml, in deploy/local, is not it)."""
    override = os.environ.get("CUSTODY_WATCH_HOME")
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "services").is_dir():
            return parent
    raise RuntimeError(f"cannot find the repository root (no pyproject.toml above {here}); set CUSTODY_WATCH_HOME")


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` names a live (non-zombie) process."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (not Linux): trust kill(0)
    # Field 3 is the state; the command name in field 2 may contain spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_pid_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until ``pid`` no longer exists at all (zombies included).

    Some programs (e.g. the postmaster's lock-file check) treat a not yet
    reaped zombie as a live process, so "dead" is not always enough.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.05)
    return False


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc scan; [] elsewhere)."""
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(stat.parent.name))
    return children


def pid_cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces, or "" if unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def signal_and_wait(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Send ``sig`` to ``pid`` and wait up to ``timeout`` s for it to exit.

    Escalates to SIGKILL when it does not; returns True if it exited in time
    without the escalation.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return False


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
    """Run a coroutine to completion from synchronous code.

    Uses a private event loop in a worker thread so that it also works when
    the caller already runs inside an event loop (e.g. an async pytest
    fixture calling a synchronous ``start()``).
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, factory()).result(timeout)
