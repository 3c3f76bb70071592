"""``python -m tests.bench``: latency, throughput, burst and memory of the real system on this machine.

Starts its own Kafka and PostgreSQL, the local sinks and the services (``devservers``), drives them only
through their public APIs, and writes a table, ``bench.json`` and ``bench.png``. See ``__main__.py`` for the flags.
"""
