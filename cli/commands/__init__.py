"""One module per `prescale` sub-command; each exposes ``register(app)``.

Commands run the flows, importing them inside the command function, after
:func:`cli.runtime.prepare_environment` has pointed Prefect and MLflow at the
settings' folders (and so that ``prescale --help`` does not pay Prefect's import).
"""
