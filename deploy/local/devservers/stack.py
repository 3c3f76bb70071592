"""``python -m devservers.stack run``: the whole system on this machine, for ``make run``.

Starts Apache Kafka and PostgreSQL (one database per service), the local SMS and email sinks, and the four services
as child processes; creates a demo agency with an API key; prints where everything listens and a copy-paste
``curl``; stops everything cleanly on Ctrl-C. Secrets for local use are generated once into ``.local/run/secrets.env``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservers.kafka import SUPER_USER, LocalKafka
from devservers.ports import free_port, port_is_free, repo_root, tail
from devservers.postgres import LocalPostgres, ensure_database
from shared.acls import SERVICES, all_acls, create_acls
from shared.crypto import generate_key
from shared.settings import KafkaSettings

INSTANCE = "run"

PREFERRED_PORTS = {
    "ingest": 8001,
    "subscription": 8002,
    "matching": 8003,
    "delivery": 8004,
    "ops": 8005,
    "sms_sink": 8025,
    "smtp_sink": 2525,
    "email_sink": 8026,
    "voice_sink": 8027,
}
SMS_ACCOUNT_SID = "AClocal0000000000000000000000000000"
SMS_FROM_NUMBER = "+15005550006"
HOTLINE_NUMBER = "+18005550177"
"""The toll-free number victims call locally: the voice sink sends its calls to subscription's hotline webhook."""
DEMO_AGENCY = "demo-county-jail"
DEMO_AGENCY_PROFILE: dict[str, Any] = {
    "name": "Demo County Jail",
    "timezone": "America/Chicago",
    "contact_phone": "+15125550100",
    "victim_services_phone": "+15125550199",
    "victim_services_url": "https://victims.example.org",
    "expected_feed_interval_minutes": 60,
}
"""The agency ``make run`` registers, and the demo's."""


def _port(name: str, prefer_defaults: bool) -> int:
    preferred = PREFERRED_PORTS[name]
    return preferred if prefer_defaults and port_is_free(preferred) else free_port()


def kafka_password_name(user: str) -> str:
    return f"KAFKA_{user.upper()}_PASSWORD"


def load_secrets(path: Path) -> dict[str, str]:
    """Local-only secrets, made once and kept, so encrypted data and API keys survive a restart."""
    values = {
        "CONTACT_ENCRYPTION_KEYS": generate_key(),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(48),
        "TOKEN_SECRET": secrets.token_urlsafe(48),
        "SESSION_SECRET": secrets.token_urlsafe(48),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "OPERATOR_TOKEN": secrets.token_urlsafe(24),
        "OPS_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "SMS_AUTH_TOKEN": secrets.token_hex(16),
        "BOUNCE_SECRET": secrets.token_urlsafe(24),
        **{kafka_password_name(user): secrets.token_urlsafe(24) for user in (SUPER_USER, *SERVICES)},
    }
    kept = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}
    if set(values) - set(kept):
        values |= kept
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        path.chmod(0o600)
        return values
    return kept


@dataclass
class Stack:
    """The sinks and the services as child processes, on servers started elsewhere (by ``run`` or by tests)."""

    root: Path
    run_dir: Path
    topic_prefix: str = ""
    prefer_default_ports: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    """Overrides for the services' settings (for example higher rate limits for a benchmark)."""
    kafka_identity: bool = False
    """Each service connects as its own SCRAM principal (passwords from the secrets), under ACLs made at start; the
    broker must hold the SCRAM users of :meth:`kafka_users`."""

    def __post_init__(self) -> None:
        self.log_dir = self.run_dir / "logs"
        self.secrets = load_secrets(self.run_dir / "secrets.env")
        for name in PREFERRED_PORTS:
            self.ports[name] = _port(name, self.prefer_default_ports)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def service_environment(self, bootstrap: str, databases: dict[str, str]) -> dict[str, str]:
        """Every service's settings, by its own prefix (see each ``services/<name>/settings.py``)."""
        s = self.secrets
        sms_provider = {
            "name": "local-sms",
            "account_sid": SMS_ACCOUNT_SID,
            "auth_token": s["SMS_AUTH_TOKEN"],
            "from_number": SMS_FROM_NUMBER,
            "base_url": self.url("sms_sink"),
        }
        env: dict[str, str] = {}
        for service in SERVICES:
            prefix = service.upper() + "_"
            if self.kafka_identity:
                env |= {
                    f"{prefix}KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                    f"{prefix}KAFKA__SASL_USERNAME": service,
                    f"{prefix}KAFKA__SASL_PASSWORD": s[kafka_password_name(service)],
                }
            env |= {
                f"{prefix}ENVIRONMENT": "development",
                f"{prefix}DATABASE_URL": databases[service],
                f"{prefix}KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                f"{prefix}KAFKA__TOPIC_PREFIX": self.topic_prefix,
                f"{prefix}HTTP_PORT": str(self.ports[service]),
                f"{prefix}PUBLIC_BASE_URL": self.url(service),
                # Everything listens on 127.0.0.1 only: a local reverse proxy (or a test) may name the client.
                f"{prefix}TRUSTED_PROXIES": "127.0.0.1",
            }
        env |= {
            "INGEST_ADMIN_TOKEN": s["ADMIN_TOKEN"],
            "INGEST_FEED_HEALTH_INTERVAL_SECONDS": "5",
            "SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS": s["CONTACT_ENCRYPTION_KEYS"],
            "SUBSCRIPTION_BLIND_INDEX_KEY": s["BLIND_INDEX_KEY"],
            "SUBSCRIPTION_TOKEN_SECRET": s["TOKEN_SECRET"],
            "SUBSCRIPTION_TWILIO_AUTH_TOKEN": s["SMS_AUTH_TOKEN"],
            "SUBSCRIPTION_SMS_FROM_NUMBER": SMS_FROM_NUMBER,
            "SUBSCRIPTION_HOTLINE_NUMBER": HOTLINE_NUMBER,
            "DELIVERY_CONTACT_ENCRYPTION_KEYS": s["CONTACT_ENCRYPTION_KEYS"],
            "DELIVERY_BLIND_INDEX_KEY": s["BLIND_INDEX_KEY"],
            "DELIVERY_TOKEN_SECRET": s["TOKEN_SECRET"],
            "DELIVERY_OPERATOR_TOKEN": s["OPERATOR_TOKEN"],
            "MATCHING_OPERATOR_TOKEN": s["OPERATOR_TOKEN"],
            "DELIVERY_SMS_PROVIDERS": json.dumps([sms_provider]),
            "DELIVERY_VOICE_PROVIDER": json.dumps(
                sms_provider | {"name": "local-voice", "base_url": self.url("voice_sink")}
            ),
            "DELIVERY_SMTP__HOST": "127.0.0.1",
            "DELIVERY_SMTP__PORT": str(self.ports["smtp_sink"]),
            "DELIVERY_SMTP__FROM_ADDRESS": "notices@custodywatch.local",
            "DELIVERY_BOUNCE_SECRETS": json.dumps({"relay": s["BOUNCE_SECRET"]}),
            "DELIVERY_MANAGE_BASE_URL": self.url("subscription"),
            "OPS_INGEST_URL": self.url("ingest"),
            "OPS_INGEST_ADMIN_TOKEN": s["ADMIN_TOKEN"],
            "OPS_DELIVERY_URL": self.url("delivery"),
            "OPS_DELIVERY_OPERATOR_TOKEN": s["OPERATOR_TOKEN"],
            "OPS_MATCHING_URL": self.url("matching"),
            "OPS_MATCHING_OPERATOR_TOKEN": s["OPERATOR_TOKEN"],
            "OPS_SESSION_SECRET": s["SESSION_SECRET"],
            "OPS_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "OPS_BOOTSTRAP_ADMIN_PASSWORD": s["OPS_ADMIN_PASSWORD"],
        }
        return env

    def kafka_users(self) -> dict[str, str]:
        """The SCRAM users a broker needs for this stack: the super user and one principal per service."""
        return {user: self.secrets[kafka_password_name(user)] for user in (SUPER_USER, *SERVICES)}

    def kafka_admin(self, bootstrap: str) -> KafkaSettings:
        """How tools and tests reach the stack's broker as its super user (PLAINTEXT without service identity)."""
        if not self.kafka_identity:
            return KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=self.topic_prefix)
        return KafkaSettings(
            bootstrap_servers=bootstrap,
            topic_prefix=self.topic_prefix,
            security_protocol="SASL_PLAINTEXT",
            sasl_username=SUPER_USER,
            sasl_password=self.secrets[kafka_password_name(SUPER_USER)],
        )

    def start(self, bootstrap: str, admin_dsn: str, database_prefix: str = "custodywatch") -> None:
        """Create each service's database, then start the sinks and the services and wait until all are ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.kafka_identity:
            asyncio.run(create_acls(self.kafka_admin(bootstrap), all_acls(self.topic_prefix)))
        databases = {service: ensure_database(admin_dsn, f"{database_prefix}_{service}") for service in SERVICES}
        self._spawn(
            "sinks",
            [
                "-m",
                "devservers.sinks",
                "--sms-port",
                str(self.ports["sms_sink"]),
                "--smtp-port",
                str(self.ports["smtp_sink"]),
                "--email-http-port",
                str(self.ports["email_sink"]),
                "--voice-port",
                str(self.ports["voice_sink"]),
                "--sms-account-sid",
                SMS_ACCOUNT_SID,
                "--sms-auth-token",
                self.secrets["SMS_AUTH_TOKEN"],
            ],
            {  # the email sink posts the bounces of late_bounce_addresses as our relay would
                "EMAIL_SINK_BOUNCE_WEBHOOK_URL": f"{self.url('delivery')}/v1/bounces/relay",
                "EMAIL_SINK_BOUNCE_WEBHOOK_SECRET": self.secrets["BOUNCE_SECRET"],
                "VOICE_SINK_INBOUND_NUMBERS": json.dumps(
                    {HOTLINE_NUMBER: self.url("subscription") + "/v1/hotline/voice"}
                ),
            },
        )
        self.env = self.service_environment(bootstrap, databases) | self.extra_env
        for service in SERVICES:
            self.start_service(service)
        for service in SERVICES:
            self.wait_ready(service)

    def start_service(self, service: str) -> None:
        self._spawn(service, ["-m", f"services.{service}"], self.env)

    def start_replica(self, service: str) -> str:
        """Another process of ``service`` on the same database, topics and consumer group, on a port of its own.

        Returns the replica's name (``delivery#2``…), which ``url``, ``wait_ready``, ``kill_service`` and
        ``stop_service`` take like a service's name.
        """
        number = 2 + sum(1 for name in self.processes if name.startswith(f"{service}#"))
        name = f"{service}#{number}"
        self.ports[name] = free_port()
        prefix = service.upper() + "_"
        env = self.env | {f"{prefix}HTTP_PORT": str(self.ports[name]), f"{prefix}PUBLIC_BASE_URL": self.url(name)}
        self._spawn(name, ["-m", f"services.{service}"], env)
        return name

    def kill_service(self, service: str) -> None:
        """SIGKILL, as in a crash: no clean-up runs."""
        process = self.processes[service]
        process.kill()
        process.wait()

    def stop_service(self, service: str, timeout: float = 20.0) -> None:
        """SIGTERM, as in a rolling restart: the process finishes its clean-up."""
        process = self.processes[service]
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, *args],
            cwd=self.root,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )

    def wait_ready(self, service: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[service]
            if process.poll() is not None:
                raise RuntimeError(
                    f"{service} exited; see {self.log_dir / service}.log:\n{tail(self.log_dir / f'{service}.log')}"
                )
            try:
                with urllib.request.urlopen(f"{self.url(service)}/readyz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{service} not ready after {timeout:.0f} s; see {self.log_dir / service}.log")

    def _admin(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - local URL we built
            f"{self.url('ingest')}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.secrets['ADMIN_TOKEN']}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as error:
            if error.code == 409:
                return {}
            raise

    def create_demo_agency(self) -> str:
        """The demo agency and a fresh API key for it (a key is shown only once, so each run makes one)."""
        self._admin("POST", "/v1/admin/agencies", {"agency_id": DEMO_AGENCY, **DEMO_AGENCY_PROFILE})
        key = self._admin("POST", f"/v1/admin/agencies/{DEMO_AGENCY}/keys", {"label": "make run"})
        return str(key.get("api_key") or key.get("key") or "")

    def banner(self, api_key: str) -> str:
        ingest, subscription = self.url("ingest"), self.url("subscription")
        record = {
            "records": [
                {
                    "record_id": "demo-1",
                    "person_number": "P-1001",
                    "booking_number": "B-2001",
                    "case_numbers": ["CR-2026-0001"],
                    "name": "Demo Person",
                    "facility": "Main Jail",
                    "status_code": "BOOKED",
                    "effective_at": "NOW",
                }
            ]
        }
        curl_body = json.dumps(record).replace('"NOW"', '"\'"$(date -u +%FT%TZ)"\'"')
        return f"""
Custody Watch is running.

  victims start here (find a case, sign up, manage):  {subscription}/

  dashboard     {self.url("ops")}/
  ingest        {ingest}/docs
  subscription  {subscription}/docs
  matching      {self.url("matching")}/readyz
  delivery      {self.url("delivery")}/docs
  SMS sink      {self.url("sms_sink")}/sink/messages      (texts the system sent)
  email sink    {self.url("email_sink")}/sink/emails  (SMTP on port {self.ports["smtp_sink"]})
  voice sink    {self.url("voice_sink")}/sink/calls        (calls the system placed, what they said)
  hotline       {HOTLINE_NUMBER}  (call it: POST {self.url("voice_sink")}/sink/inbound-calls
                {{"from": "+13125550123", "to": "{HOTLINE_NUMBER}", "digits": ["1", "0"]}})
  logs          {self.log_dir}/

Demo agency: demo-county-jail    API key: {api_key}
Admin token (ingest): {self.secrets["ADMIN_TOKEN"]}    Operator token (delivery): {self.secrets["OPERATOR_TOKEN"]}
Dashboard: {self.url("ops")}/    user admin, password {self.secrets["OPS_ADMIN_PASSWORD"]}

Subscribe to a case (the code arrives in the SMS sink):
  curl -s -X POST {subscription}/v1/subscriptions -H 'Content-Type: application/json' \\
    -d '{{"agency_id": "demo-county-jail", "identifier": {{"kind": "case_number", "value": "CR-2026-0001"}},
         "sms": "+15125550123", "language": "en", "timezone": "America/Chicago"}}'

Verify it with the 6-digit code from the SMS sink (the token is the last part of the answer's manage_url):
  curl -s -X POST {subscription}/v1/subscriptions/SUBSCRIPTION_ID/verify -H 'Authorization: Bearer MANAGE_TOKEN' \\
    -H 'Content-Type: application/json' -d '{{"channel": "sms", "code": "123456"}}'

Push a custody change:
  curl -s -X POST {ingest}/v1/agencies/demo-county-jail/custody-events \\
    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\
    -d '{curl_body}'

Ctrl-C stops everything.
"""

    def stop(self) -> None:
        """Stop the services, then the sinks; a second Ctrl-C meanwhile must not leave processes behind."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        try:
            replicas = [name for name in self.processes if "#" in name]
            for name in (*replicas, *reversed(SERVICES), "sinks"):
                process = self.processes.get(name)
                if process is not None and process.poll() is None:
                    process.terminate()
            for process in self.processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["run"])
    parser.add_argument(
        "--demo",
        action="store_true",
        help="once the system is up, play a short scripted story (subscribe, verify, a booking, a release)",
    )
    parser.add_argument(
        "--kafka-plaintext",
        action="store_true",
        help="run Kafka without authentication or ACLs (by default each service is its own SCRAM principal)",
    )
    arguments = parser.parse_args()
    root = repo_root()
    stack = Stack(root, root / ".local" / INSTANCE, kafka_identity=not arguments.kafka_plaintext)
    kafka = (
        LocalKafka(root, INSTANCE)
        if arguments.kafka_plaintext
        else LocalKafka(root, f"{INSTANCE}-scram", scram_users=stack.kafka_users())
    )
    postgres = LocalPostgres(root, INSTANCE, fast=False)
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("starting Kafka and PostgreSQL...", file=sys.stderr)
        bootstrap = kafka.start()
        admin_dsn = postgres.start()
        print("starting the sinks and the services...", file=sys.stderr)
        stack.start(bootstrap, admin_dsn)
        api_key = stack.create_demo_agency()
        if arguments.demo:
            import asyncio  # noqa: PLC0415 - only the demo needs these

            import httpx  # noqa: PLC0415

            from devservers.demo import play_story  # noqa: PLC0415 - demo imports this module
            from devservers.driver import DriverError  # noqa: PLC0415 - so does the driver

            print("\nThe demo story:\n", flush=True)
            try:
                asyncio.run(play_story(stack, api_key=api_key))
            except (DriverError, httpx.HTTPError) as error:
                print(f"the demo story stopped: {error}; see {stack.log_dir}", file=sys.stderr)
        print(stack.banner(api_key), flush=True)
        cli = {
            "CUSTODY_WATCH_INGEST_URL": stack.url("ingest"),
            "CUSTODY_WATCH_DELIVERY_URL": stack.url("delivery"),
            "CUSTODY_WATCH_API_KEY": api_key,
            "CUSTODY_WATCH_ADMIN_TOKEN": stack.secrets["ADMIN_TOKEN"],
            "CUSTODY_WATCH_OPERATOR_TOKEN": stack.secrets["OPERATOR_TOKEN"],
        }
        print("The command line, in another terminal (see .venv/bin/custody-watch --help):", flush=True)
        print("  export " + " ".join(f"{name}={value}" for name, value in cli.items()), flush=True)
        print("  .venv/bin/custody-watch delivery tail\n", flush=True)
        while all(process.poll() is None for process in stack.processes.values()):
            time.sleep(1)
        failed = [name for name, process in stack.processes.items() if process.poll() is not None]
        print(f"stopped unexpectedly: {', '.join(failed)}; see {stack.log_dir}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        stack.stop()
        kafka.stop()
        postgres.stop()
        print("stopped.", file=sys.stderr)


if __name__ == "__main__":
    main()
