"""What the local Kafka broker and PostgreSQL cluster share: a named instance under ``<root>/.local``, ports kept
across restarts while they stay free, and a life of start, stop and restart (also as a context manager)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from devservers.ports import free_port, port_is_free

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def instance_name(kind: str, name: str, *, reserved: Iterable[str] = ()) -> str:
    """``name`` when it can name a folder of instance data (no path separators, no leading dot); ValueError else."""
    if not INSTANCE_NAME.match(name) or name in set(reserved):
        raise ValueError(f"invalid {kind} instance name: {name!r}")
    return name


def kept_or_free_port(port: int | None, *, taken: Iterable[int] = ()) -> int:
    """``port`` while nothing else listens on it, else a free port that is none of ``taken``."""
    if port is not None and port_is_free(port):
        return port
    others = set(taken)
    chosen = free_port()
    while chosen in others:
        chosen = free_port()
    return chosen


class LocalServer(ABC):
    """A server process of this machine that a later process can find again by its instance folder."""

    @property
    @abstractmethod
    def pid(self) -> int | None:
        """Pid of the running server, or None."""

    @abstractmethod
    def start(self) -> str:
        """Start the server (or reuse this instance's running one); return its address."""

    @abstractmethod
    def stop(self, timeout: float = ...) -> None:
        """Stop the server, forcefully after ``timeout`` seconds."""

    def is_running(self) -> bool:
        return self.pid is not None

    def restart(self) -> str:
        """Stop and start again on the same ports and data."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
