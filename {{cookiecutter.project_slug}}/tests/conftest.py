from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


def mixed_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values; the label depends on both."""
    rng = np.random.default_rng(seed)
    size = rng.normal(50, 10, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    noise = rng.normal(0, 1, rows)
    label = np.where((size > 50) ^ (colour == "red"), "yes", "no")
    frame = pd.DataFrame({"size": size, "colour": colour, "noise": noise, "label": label})
    frame.loc[::7, "size"] = np.nan
    frame.loc[::11, "colour"] = np.nan
    return frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return mixed_frame()


@pytest.fixture(scope="session")
def make_frame() -> Callable[..., pd.DataFrame]:
    return mixed_frame
