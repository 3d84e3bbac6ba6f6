"""The SLO, the user's one knob, and the policy state derived from it.

A user says how often capacity may fall short (``AppProfile.slo.violation_budget``: the share of minutes
whose demand exceeds serving capacity). Everything else the decision needs is derived from it, never set by
hand:

* ``policy.py``: :class:`SloPolicy`, the policy state (which rule, its covered quantile and headroom, the
  reactive rule's target, the controller's gain), with how it was found; as JSON it is logged to MLflow
  beside the forecaster and loaded with the champion;
* ``tuning.py``: *before use*, an Optuna search that replays the app's recent history through the one
  decision function in the replay's simulator and keeps the cheapest knobs whose realised violations stay
  within the budget; the skill gate (the forecast's pinball loss at each tier's lead time against
  persistence) decides between the predictive and the reactive rule;
* ``controller.py``: *online*, adaptive conformal inference on the realised under-provisioned minutes, so the
  realised rate follows the budget; its state is kept between decisions (the ledger).

How it runs: the replay's :class:`~prescale.replay.policies.adaptive.Adaptive` rule is the policy a user
gets, ex ante: tuned on data before the window, then stepping with its controller.
"""

from prescale.slo.controller import Tracker, TrackerState
from prescale.slo.policy import SloPolicy

__all__ = ["SloPolicy", "Tracker", "TrackerState"]
