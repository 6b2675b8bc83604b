"""Shared fixtures.

Real-data tests use the ``shared_data`` fixture: it skips with a clear reason when
../shared/data (or $LLMREC_SHARED_DATA) is absent, except under CI=true, where a
missing folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from llmrec.datasets import make_synthetic

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("LLMREC_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "README.md").is_file():
        msg = (f"real data folder {d} is absent (set LLMREC_SHARED_DATA or place "
               "../shared/data next to the repository)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("under CI the real data must be present: " + msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def synth():
    """Small synthetic records: 400 prompts x 8 LLMs, 4 topics."""
    return make_synthetic(400, 8, n_topics=4, seed=0)


@pytest.fixture(scope="session")
def synth_split(synth):
    rng = np.random.default_rng(0)
    perm = rng.permutation(synth.n_prompts)
    return synth.select_prompts(perm[:320]), synth.select_prompts(perm[320:])
