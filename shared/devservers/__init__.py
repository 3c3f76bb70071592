"""Local, Docker-free Kafka and PostgreSQL servers for development and tests.

``python -m shared.devservers up|down|status`` manages the shared dev pair;
tests use :class:`LocalKafka` / :class:`LocalPostgres` directly (see
``tests/servers.py``).
"""

from shared.devservers.kafka import KafkaStartError, LocalKafka
from shared.devservers.ports import free_port, repo_root
from shared.devservers.postgres import LocalPostgres, PostgresStartError

__all__ = [
    "KafkaStartError",
    "LocalKafka",
    "LocalPostgres",
    "PostgresStartError",
    "free_port",
    "repo_root",
]
