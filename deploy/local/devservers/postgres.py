"""A throw-away local PostgreSQL cluster for dev and tests (no Docker needed).

Uses the PostgreSQL server binaries installed on the machine (``initdb``,
``pg_ctl``); on Debian/Ubuntu, as root, they are installed on demand with
apt. The cluster lives in ``<root>/.local/postgres/<name>/`` (``data/``,
``postgres.log``, the unix socket in ``run/``), listens on 127.0.0.1 only and
trusts every local connection: it is for development, never for real data.

PostgreSQL refuses to run as root, so when we are root the server runs as
the ``postgres`` system user (created if missing) and owns the instance dir.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from devservers.ports import child_pids, pid_alive, run_sync, signal_and_wait, tail, wait_pid_gone
from devservers.process import LocalServer, instance_name, kept_or_free_port

__all__ = ["LocalPostgres", "PostgresStartError", "find_pg_bindir", "replace_database"]

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
SERVER_USER = "postgres"
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SERVER_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
# sun_path is 108 bytes on Linux; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 90


class PostgresStartError(RuntimeError):
    """The local cluster could not be provisioned or did not come up."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _has_tools(bindir: Path) -> bool:
    return all((bindir / tool).is_file() for tool in _SERVER_TOOLS)


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out:
                found.append(Path(out))
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    found.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True))
    return found


def _apt_install_postgres() -> None:
    log.warning("PostgreSQL server binaries not found; installing them with apt-get")
    # Debian's postinst would otherwise create and start a "main" cluster on 5432.
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PostgresStartError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def find_pg_bindir(install: bool = True) -> Path:
    """Directory holding initdb/pg_ctl/postgres (newest version wins).

    Looks at ``pg_config --bindir``, ``PATH`` and ``/usr/lib/postgresql/*/bin``.
    When nothing is found and we are root on a Debian-like system (and
    ``install`` is true), installs the ``postgresql`` package first.
    """
    for bindir in _candidate_bindirs():
        if _has_tools(bindir):
            return bindir
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install_postgres()
        return find_pg_bindir(install=False)
    raise PostgresStartError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install them "
        "(Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql) "
        "or put their bin directory on PATH"
    )


def replace_database(dsn: str, database: str) -> str:
    """``dsn`` with its database (URL path) replaced by ``database``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def ensure_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn`` unless it exists (idempotent); return its DSN."""
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")

    async def create() -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    run_sync(create, timeout=60)
    return replace_database(admin_dsn, name)


def _ensure_server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresStartError(
            f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as; "
            f"create one (useradd --system {SERVER_USER})"
        )
    subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVER_USER)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in (*dirnames, *filenames):
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(dirpath, entry), uid, gid, follow_symlinks=False)


class LocalPostgres(LocalServer):
    """A local PostgreSQL cluster with trust auth on 127.0.0.1.

    ``fast=True`` (the default, meant for tests) turns off fsync,
    synchronous_commit and full_page_writes: much faster, but a machine crash
    can corrupt the cluster. The port is picked at the first start and kept.
    """

    def __init__(
        self,
        root: Path,
        name: str = "dev",
        *,
        instance_dir: Path | None = None,
        port: int | None = None,
        fast: bool = True,
        max_connections: int = 300,
        start_timeout: float = START_TIMEOUT,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.name = instance_name("PostgreSQL", name)
        self.instance_dir = (instance_dir or self.root / ".local" / "postgres" / name).resolve()
        self.fast = fast
        self.extra_settings = dict(settings or {})
        """More ``postgresql.conf`` lines (the benchmark loads pg_stat_statements)."""
        self.max_connections = max_connections
        self.start_timeout = start_timeout
        self.port = port or self._saved_port()
        self._bindir: Path | None = None

    # -- paths ---------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.instance_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.instance_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.instance_dir / "run"

    @property
    def state_file(self) -> Path:
        return self.instance_dir / "state.json"

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    # -- state -----------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """Admin DSN ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        if self.port is None:
            raise RuntimeError("the cluster has not been started yet")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """Pid of the running postmaster, or None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _saved_port(self) -> int | None:
        # A running postmaster knows best: postmaster.pid's 4th line is its port.
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().split("\n")[3])
        try:
            return int(json.loads(self.state_file.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> str:
        """Start the cluster (or reuse this instance's running one); return the admin DSN."""
        if self.is_running() and self.port is not None:
            self._wait_ready(self.start_timeout)
            return self.dsn
        self.instance_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self._own_instance_dir()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        self.port = kept_or_free_port(self.port)
        self._write_config()
        self.state_file.write_text(json.dumps({"port": self.port, "dsn": self.dsn}) + "\n")
        proc = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "start",
            ],
            detach=True,
        )
        if proc.returncode != 0:
            raise PostgresStartError(
                f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}\n"
                f"--- {self.log_file} ---\n{tail(self.log_file)}"
            )
        self._wait_ready(self.start_timeout)
        return self.dsn

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (rolls back open transactions, disconnects clients)."""
        pid = self.pid
        if pid is None:
            return
        proc = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
        )
        if proc.returncode != 0 and pid_alive(pid):
            log.warning("pg_ctl stop failed (%s); sending SIGKILL", proc.stderr.strip())
            signal_and_wait(pid, signal.SIGKILL, 5)

    def kill(self) -> None:
        """SIGKILL the postmaster: an unclean crash, for fault-injection tests."""
        pid = self.pid
        if pid is None:
            return
        # Take the backends down too, as a crash of the whole server would:
        # survivors would keep the shared memory busy and block a restart.
        victims = [pid, *child_pids(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        for victim in victims:
            wait_pid_gone(victim)

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists (idempotent); return its DSN."""
        return ensure_database(self.dsn, name)

    # -- internals ---------------------------------------------------------------
    def _run(self, cmd: list[str], *, detach: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a server tool, as the ``postgres`` user when we are root.

        ``detach`` puts it in a new session so the postmaster it spawns does
        not get the terminal's Ctrl-C and outlives our process.
        """
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise PostgresStartError("runuser not found (util-linux); cannot drop root")
            cmd = [runuser, "-u", SERVER_USER, "--", *cmd]
        return subprocess.run(
            cmd,
            cwd=self.instance_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=detach,
        )

    def _own_instance_dir(self) -> None:
        if os.geteuid() != 0:
            return
        user = _ensure_server_user()
        _chown_tree(self.instance_dir, user.pw_uid, user.pw_gid)
        probe = self._run(["test", "-w", str(self.instance_dir)])
        if probe.returncode != 0:
            raise PostgresStartError(
                f"the {SERVER_USER!r} user cannot write {self.instance_dir}: a parent "
                "directory is probably not searchable by other users (chmod o+x it) "
                "or pass instance_dir= somewhere else"
            )

    def _initdb(self) -> None:
        proc = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        if proc.returncode != 0:
            raise PostgresStartError(f"initdb failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# Local dev settings (rewritten on every start)\ninclude 'custody_watch.conf'\n")

    def _write_config(self) -> None:
        socket_dir = str(self.socket_dir)
        settings: dict[str, str] = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            # Unix sockets have a short path limit; TCP alone is enough for us.
            "unix_socket_directories": f"'{socket_dir}'" if len(socket_dir) <= _MAX_SOCKET_DIR else "''",
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "log_timezone": "'UTC'",
            "timezone": "'UTC'",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.extra_settings
        conf = self.data_dir / "custody_watch.conf"
        conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if os.geteuid() == 0:
            user = _ensure_server_user()
            os.chown(conf, user.pw_uid, user.pw_gid)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        cmd = [
            str(self.bindir / "pg_isready"),
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-t",
            "2",
        ]
        while time.monotonic() < deadline:
            if subprocess.run(cmd, check=False, capture_output=True).returncode == 0:
                return
            if self.pid is None:
                break
            time.sleep(0.1)
        raise PostgresStartError(
            f"PostgreSQL on 127.0.0.1:{self.port} is not accepting connections; "
            f"see {self.log_file}\n{tail(self.log_file)}"
        )
