"""The front end: the ``prescale`` command (``main.py``, one module per sub-command in
``commands/``), the local control plane it starts (``services.py``: Prefect, MLflow, a
worker) and the environment it prepares before Prefect is imported (``runtime.py``).

It is the top layer: it runs the flows, and nothing below it (``flows``, ``tasks``,
``models``, ``prescale``) imports it.
"""
