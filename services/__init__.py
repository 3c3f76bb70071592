"""The four Custody Watch services: ingest, subscription, matching, delivery. Each has the same inner layout."""
