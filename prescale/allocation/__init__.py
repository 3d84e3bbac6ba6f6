"""The decision: which nodes of which resource types each app should run over the forecast horizon.

``allocate(forecast, catalog, profile, current, settings) -> Allocation`` is the entry point (pure; see
``allocate.py``). The maths is in ``problem.py``, the exact mixed-integer program in ``milp.py``, the Optuna
search over the non-linear decisions in ``search.py`` and the reasons in ``explain.py``.
"""

from prescale.allocation.allocate import Allocation, Mix, allocate
from prescale.allocation.problem import AllocationError, Knobs, SolverSettings

__all__ = ["Allocation", "AllocationError", "Knobs", "Mix", "SolverSettings", "allocate"]
