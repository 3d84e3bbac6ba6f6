"""Prefect flows: wiring only. Each flow takes parameters, calls tasks, returns a summary.

- ``ingest.py``: ``ingest-metrics`` (a file or a Prometheus window into the store)
- ``demo.py``: ``demo`` (the main job on the bundled traces; what ``make run`` runs)
"""
