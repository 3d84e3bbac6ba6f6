"""One module per `prescale` sub-command; each exposes ``register(app)``.

Together with ``prescale/cli.py`` this package is the composition root: the only
part of ``prescale`` that may import ``flows`` (and through them Prefect), always
inside the command function, after :func:`prescale.runtime.prepare_environment`.
"""
