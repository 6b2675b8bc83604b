import numpy as np
import pytest

from llmrec.errors import CapabilityError
from llmrec.routers import make_router

from .router_conformance import RouterConformance


class TestRandom(RouterConformance):
    def make(self):
        return make_router("random", random_state=3)


class TestBestSingle(RouterConformance):
    def make(self):
        return make_router("best-single")


class TestOracle(RouterConformance):
    def make(self):
        return make_router("oracle")


class TestOracleMix(RouterConformance):
    def make(self):
        return make_router("oracle-mix", p=0.7)


def test_best_single_picks_best_mean(synth):
    r = make_router("best-single").fit(synth)
    names, _ = r.recommend(["x"], k=1)
    assert names[0, 0] == synth.llm_summary().sort_values("mean_score").llm.iloc[-1]


def test_oracle_refuses_text(synth):
    with pytest.raises(CapabilityError):
        make_router("oracle").fit(synth).score(["x"])


def test_oracle_mix_draws(synth):
    r = make_router("oracle-mix", p=1.0).fit(synth)
    picks = r.sample_picks(synth, n_draws=3)
    d = synth.dense()
    best = r.argmax(np.where(np.isnan(d), -np.inf, d))  # the oracle under the tie rule
    assert (np.take_along_axis(d, best[:, None], 1)[:, 0] == np.nanmax(d, axis=1)).all()
    assert (picks == best[None]).all()
