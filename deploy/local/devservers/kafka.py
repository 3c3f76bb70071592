"""A throw-away single-node Apache Kafka 4.x broker (KRaft) for dev and tests.

No Docker needed: the broker jars are resolved once from Maven Central with
``mvn`` (``deploy/kafka/pom.xml``) into ``<root>/.local/kafka/libs`` and the
broker runs as a plain ``java`` process in combined broker+controller mode.
Its data, config and logs live in ``<root>/.local/kafka/<name>/``.

The process is started in its own session so that it survives the exit of
the process that started it (``python -m devservers up``); its pid and
ports are recorded in ``state.json`` in the data dir, so a later process can
find, reuse or stop it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from devservers.ports import pid_alive, pid_cmdline, run_sync, signal_and_wait, tail
from devservers.process import LocalServer, instance_name, kept_or_free_port
from shared.settings import KafkaSettings

__all__ = ["KafkaStartError", "LocalKafka", "ensure_kafka_libs", "random_cluster_id"]

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
SUPER_USER = "admin"
STOP_TIMEOUT = 20.0
JVM_HEAP = ("-Xmx1g", "-Xms256m")  # tests create many topics; each partition costs heap


class KafkaStartError(RuntimeError):
    """The local broker could not be provisioned or did not come up."""


def random_cluster_id() -> str:
    """A random Kafka ``Uuid`` string: 16 bytes, URL-safe base64, no padding.

    Like ``org.apache.kafka.common.Uuid.randomUuid`` it never starts with
    ``-`` (that would look like a command-line option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _libs_ready(libs: Path, digest: str) -> bool:
    stamp = libs / ".pom-sha256"
    return stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar"))


def ensure_kafka_libs(pom: Path, libs: Path) -> Path:
    """Make sure ``libs`` holds the runtime jars of ``pom``; return ``libs``.

    Resolution runs only when the folder is missing, empty or was resolved
    from a different pom (a sha256 stamp is kept). Concurrent callers are
    serialised with a file lock; the jars are copied into a temporary folder
    and swapped in, so a half-finished download is never used.
    """
    if not pom.is_file():
        raise KafkaStartError(f"Kafka pom not found: {pom}")
    digest = _pom_digest(pom)
    if _libs_ready(libs, digest):
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".libs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _libs_ready(libs, digest):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaStartError(
                "mvn not found: install Maven (apt-get install maven) so the Kafka "
                f"broker jars can be resolved from {pom}"
            )
        staging = libs.with_name(f"{libs.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        log.info("resolving Kafka jars with Maven into %s", libs)
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            output = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise KafkaStartError(
                f"resolving the Kafka jars failed (mvn exit {proc.returncode}); is Maven Central reachable?\n{output}"
            )
        (staging / ".pom-sha256").write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


@dataclass
class _State:
    pid: int
    port: int
    controller_port: int
    cluster_id: str


class LocalKafka(LocalServer):
    """A single-node KRaft Kafka broker running from local jars.

    ``root`` is the repository root (it holds ``deploy/kafka`` and ``.local``).
    ``data_dir`` and ``libs_dir`` override where the instance data and the
    (shared, cached) jars live. Ports default to free ones picked at the first
    start and are then kept, so ``restart()`` comes back on the same address.
    """

    def __init__(
        self,
        root: Path,
        name: str = "dev",
        *,
        data_dir: Path | None = None,
        libs_dir: Path | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        start_timeout: float = START_TIMEOUT,
        scram_users: Mapping[str, str] | None = None,
        harness_listener: bool = False,
    ) -> None:
        self.root = root.resolve()
        self.name = instance_name("Kafka", name, reserved=["libs"])
        self.data_dir = (data_dir or self.root / ".local" / "kafka" / name).resolve()
        self.libs_dir = (libs_dir or self.root / ".local" / "kafka" / "libs").resolve()
        self.pom = self.root / "deploy" / "kafka" / "pom.xml"
        self.log4j_config = self.root / "deploy" / "kafka" / "log4j2.properties"
        self.start_timeout = start_timeout
        self.scram_users = dict(scram_users or {})
        """With users (name -> password, ``admin`` among them): SASL/SCRAM-SHA-512 and ACLs, ``admin`` the super user;
        without: PLAINTEXT, as a throw-away development broker."""
        if self.scram_users and SUPER_USER not in self.scram_users:
            raise ValueError(f"a SASL broker needs the super user {SUPER_USER!r} among its SCRAM users")
        if harness_listener and not self.scram_users:
            raise ValueError("a harness listener is the PLAINTEXT side door of a SASL broker: give it SCRAM users")
        self.harness_listener = harness_listener
        """A second, PLAINTEXT listener on 127.0.0.1 for the test process alone (its clients are ANONYMOUS, a super
        user), so tests that read and write any topic keep working while the services authenticate."""
        self.harness_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self.cluster_id: str | None = None
        saved = self._load_state()
        self.port = port or (saved.port if saved else None)
        self.controller_port = controller_port or (saved.controller_port if saved else None)
        if saved is not None:
            self.cluster_id = saved.cluster_id
            if self._owns(saved.pid):
                self._pid = saved.pid

    # -- paths -----------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs`` (the partition data)."""
        return self.data_dir / "data"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def console_log(self) -> Path:
        """stdout/stderr of the java process."""
        return self.data_dir / "kafka.out"

    @property
    def server_log(self) -> Path:
        """The log4j2 log (WARN and above)."""
        return self.data_dir / "logs" / "server.log"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    # -- state -----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Pid of the running broker, or None."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        return self._pid if self._owns(self._pid) else None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` (only meaningful once a port was chosen)."""
        if self.port is None:
            raise RuntimeError("the broker has not been started yet")
        return f"127.0.0.1:{self.port}"

    @property
    def harness_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the harness listener (PLAINTEXT, the test process's own)."""
        if self.harness_port is None:
            raise RuntimeError("the broker has no harness listener, or has not been started yet")
        return f"127.0.0.1:{self.harness_port}"

    def admin_settings(self) -> KafkaSettings:
        """How a super user reaches this broker (the tests' and the devservers' own admin client)."""
        if not self.scram_users:
            return KafkaSettings(bootstrap_servers=self.bootstrap, client_id="custody-watch-devservers")
        return self.client_settings(SUPER_USER)

    def client_settings(self, user: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            client_id=f"custody-watch-{user}",
            security_protocol="SASL_PLAINTEXT",
            sasl_username=user,
            sasl_password=self.scram_users[user],
        )

    def _owns(self, pid: int | None) -> bool:
        """True if ``pid`` is alive and is *this* instance's broker (pids recycle)."""
        return pid_alive(pid) and str(self.config_file) in pid_cmdline(pid or 0)

    def _load_state(self) -> _State | None:
        try:
            raw: dict[str, Any] = json.loads(self.state_file.read_text())
            return _State(
                pid=int(raw["pid"]),
                port=int(raw["port"]),
                controller_port=int(raw["controller_port"]),
                cluster_id=str(raw["cluster_id"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_state(self, pid: int) -> None:
        if not (self.port and self.controller_port and self.cluster_id):
            raise RuntimeError("ports and cluster id must be known before saving state")
        state = {
            "pid": pid,
            "port": self.port,
            "controller_port": self.controller_port,
            "cluster_id": self.cluster_id,
            "bootstrap": self.bootstrap,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> str:
        """Start the broker (or reuse this instance's running one); return bootstrap."""
        if self.is_running():
            self.wait_ready(timeout=self.start_timeout)
            return self.bootstrap
        java = shutil.which("java")
        if java is None:
            raise KafkaStartError("java not found: install a JDK/JRE 17+ (apt-get install openjdk-17-jre-headless)")
        ensure_kafka_libs(self.pom, self.libs_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        self._choose_ports()
        self._write_config()
        if not (self.log_dir / "meta.properties").is_file():
            self._format(java)
        elif not self._users_file.exists():  # formatted before the users were recorded: take them as they are
            self._users_file.write_text(self._users_digest() + "\n")
        elif self._users_digest() != self._users_file.read_text().strip():
            raise KafkaStartError(
                f"the broker in {self.data_dir} was formatted with other SCRAM users than asked for now (its accounts"
                " are made when it is formatted, e.g. from .local/run/secrets.env): delete that directory to start"
                " it afresh"
            )
        with open(self.console_log, "ab") as out:
            out.write(f"\n=== starting broker at {time.ctime()} ===\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [java, *self._jvm_args(), "kafka.Kafka", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._pid = self._proc.pid
        self._save_state(self._proc.pid)
        try:
            self.wait_ready(timeout=self.start_timeout)
        except BaseException:
            self.kill()
            raise
        return self.bootstrap

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` s."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL the broker: an unclean crash, for fault-injection tests."""
        self._signal(signal.SIGKILL, 5.0)

    def _signal(self, sig: int, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            if self._proc is not None:
                self._proc.send_signal(sig)
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("Kafka broker %s ignored signal %s; killing it", pid, sig)
                    self._proc.kill()
                    self._proc.wait()
            else:
                signal_and_wait(pid, sig, timeout)
        elif self._proc is not None:
            self._proc.poll()  # reap a broker that died by itself
        self._proc = None
        self._pid = None

    # -- readiness -----------------------------------------------------------
    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Wait until the broker serves metadata listing itself; return the cluster id."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self.pid is None:
                raise KafkaStartError(
                    f"Kafka broker exited during startup; see {self.console_log} and "
                    f"{self.server_log}\n{self._log_tail()}"
                )
            if self._port_accepts():
                try:
                    return run_sync(lambda: probe_cluster_id(self.admin_settings()), timeout=15)
                except (KafkaError, KafkaStartError, OSError, TimeoutError) as err:  # not ready yet
                    last_error = err
            time.sleep(0.25)
        raise KafkaStartError(
            f"Kafka broker at {self.bootstrap} not ready after {timeout:.0f}s "
            f"(last error: {last_error!r}); see {self.console_log}\n{self._log_tail()}"
        )

    def _port_accepts(self) -> bool:
        if self.port is None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def _log_tail(self) -> str:
        return "\n".join(
            f"--- {path.name} ---\n{text}" for path in (self.console_log, self.server_log) if (text := tail(path, 30))
        )

    # -- provisioning ------------------------------------------------------
    def _choose_ports(self) -> None:
        self.port = kept_or_free_port(self.port)
        self.controller_port = kept_or_free_port(self.controller_port, taken=[self.port])
        if self.harness_listener:
            self.harness_port = kept_or_free_port(self.harness_port, taken=[self.port, self.controller_port])

    def _jvm_args(self) -> list[str]:
        return [
            *JVM_HEAP,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            f"{self.libs_dir}/*",  # expanded by java itself, not a shell
        ]

    def _write_config(self) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": (f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A broker that was SIGKILLed (kill()) is only let back in once its
            # old registration expires: keep that short for fault tests.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            # Services create their topics explicitly; auto-creation only keeps
            # ad-hoc dev tooling simple.
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "168",
        }
        if self.scram_users:
            settings |= self._sasl_settings()
        body = "".join(f"{key}={value}\n" for key, value in settings.items())
        header = "# Generated by deploy/local/devservers/kafka.py; rewritten on every start.\n"
        self.config_file.write_text(header + body)

    def _sasl_settings(self) -> dict[str, str]:
        """Clients authenticate with SCRAM-SHA-512 and are authorised by ACLs; the controller listener (this node
        talking to itself, on 127.0.0.1) stays PLAINTEXT, as SCRAM credentials live in the metadata it serves."""
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="{SUPER_USER}" password="{self.scram_users[SUPER_USER]}";'
        )
        harness = f",HARNESS://127.0.0.1:{self.harness_port}" if self.harness_listener else ""
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            + harness,
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}{harness}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
            + (",HARNESS:PLAINTEXT" if self.harness_listener else ""),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": login,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS: the controller listener, and the harness listener of a test session's broker
            "super.users": f"User:{SUPER_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _format(self, java: str) -> None:
        """Format the KRaft storage (first start only) with a fresh cluster id."""
        self.cluster_id = random_cluster_id()
        cmd = [
            java,
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",  # short-lived tool: JIT warm-up does not pay off
            *self._jvm_args()[len(JVM_HEAP) :],
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.config_file),
            *(
                argument
                for user, password in self.scram_users.items()
                for argument in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")
            ),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KafkaStartError(
                f"formatting Kafka storage in {self.log_dir} failed "
                f"(exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        self._users_file.write_text(self._users_digest() + "\n")

    @property
    def _users_file(self) -> Path:
        return self.data_dir / "scram-users.sha256"

    def _users_digest(self) -> str:
        return hashlib.sha256(json.dumps(self.scram_users, sort_keys=True).encode()).hexdigest()


async def probe_cluster_id(settings: KafkaSettings, timeout_ms: int = 5000) -> str:
    """Ask the broker for cluster metadata; return the cluster id.

    Fails unless at least one broker is listed (a KRaft broker that is still
    fenced answers, but does not list itself).
    """
    admin = AIOKafkaAdminClient(**settings.common_kwargs() | {"request_timeout_ms": timeout_ms})
    await admin.start()
    try:
        info = await admin.describe_cluster()
    finally:
        await admin.close()
    cluster_id = info.get("cluster_id")
    if not info.get("brokers") or not cluster_id:
        raise KafkaStartError(f"broker at {settings.bootstrap_servers} not ready yet: {info!r}")
    return str(cluster_id)
