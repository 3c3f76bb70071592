"""The ingest service: agencies push custody feeds (JSON, CSV, NIEM XML); each real status change is one event.

Where things are:

- ``app.py`` composes the service; ``deps.py`` holds the HTTP dependencies (pool, settings, API key, admin token);
  ``consumers.py`` declares the topics it writes (it consumes none).
- The feed itself: ``routes/`` (the uploads), ``schemas.py`` (their HTTP models and published request bodies),
  ``domain/`` (records, change detection, CSV reading, event ids), ``niem.py`` (NIEM XML read into records),
  ``flows/`` (batches, CSV files, writing events), ``store/`` (batches and files, subjects and records).
- Features with a folder each, holding the same files (``api``, ``schemas``, ``domain``, ``flows``, ``store``):
  ``agencies/``, ``keys/``, ``storm_holds/``, ``overrides/``, ``sealing/``, ``feed_health/``.
"""
