"""Local, Docker-free Kafka and PostgreSQL servers for development and tests.

``python -m devservers up|down|status`` manages the shared dev pair;
tests use :class:`LocalKafka` / :class:`LocalPostgres` directly (see
``tests/servers.py``).
"""

from devservers.kafka import KafkaStartError, LocalKafka
from devservers.ports import free_port, repo_root
from devservers.postgres import LocalPostgres, PostgresStartError

__all__ = [
    "KafkaStartError",
    "LocalKafka",
    "LocalPostgres",
    "PostgresStartError",
    "free_port",
    "repo_root",
]
