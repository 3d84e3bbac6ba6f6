"""Synthetic series for the forecasting tests: seeded, small, with known structure.

``daily_panel`` is a 5-minute series with a daily sine, a slow level and noise:
every baseline and the LSTM have something to learn and nothing is degenerate.
``trained`` trains every candidate once per module (small preset) for the tests
that only inspect a result (registry, pyfunc, plots).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.series import Panel, panel_from_wide
from models.train import TrainConfig

STEP = 300
DAY = 288


def daily_frame(days: float = 5.0, *, seed: int = 0, metrics: tuple[str, ...] = ("cpu_cores",),
                noise: float = 0.3, start: str = "2024-03-04") -> pd.DataFrame:
    """A wide frame: ``10 + 4 sin(day) + drift + noise`` (metric k scaled by k + 1)."""
    rng = np.random.default_rng(seed)
    n = int(days * DAY)
    t = np.arange(n)
    base = 10 + 4 * np.sin(2 * np.pi * t / DAY) + 0.002 * t
    columns = {m: (k + 1) * base + rng.normal(0, noise * (k + 1), n) for k, m in enumerate(metrics)}
    return pd.DataFrame(columns, index=pd.date_range(start, periods=n, freq=f"{STEP}s", tz="UTC"))


def daily_panel(days: float = 5.0, **kwargs) -> Panel:
    return panel_from_wide(daily_frame(days, **kwargs))


def tiny_config(**overrides) -> TrainConfig:
    """The small preset, a little smaller still: tests check behaviour, not accuracy."""
    return TrainConfig.preset("small", **{"epochs": 2, "max_samples": 600, "threads": 1, **overrides})


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread, as in training: on a busy 2-core host two threads run several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained():
    from models.train import train_panels

    panel = daily_panel(4.0, seed=1)
    return train_panels([("svc/default", panel)], tiny_config())[0]
