"""Prefect tasks: one I/O step each, thin and idempotent, with retries where I/O can fail.

The logic they call lives in ``prescale`` (and ``models``); a task adds a name,
retries, logging and artifacts, nothing else.
"""
