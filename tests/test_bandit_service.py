"""The service's decision log (h14) read back by read_decisions, evaluated and refitted."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from llmrec.data import read_decisions  # noqa: E402
from llmrec.datasets import make_synthetic  # noqa: E402
from llmrec.evaluation.ope import evaluate_logs  # noqa: E402
from llmrec.policies import fit_logged  # noqa: E402
from llmrec.routers import make_router  # noqa: E402
from llmrec.service.app import create_app  # noqa: E402


def test_service_log_with_policy_round_trip(tmp_path):
    rec = make_synthetic(200, 4, n_topics=2, seed=3)
    make_router("linear").fit(rec.select_prompts(np.arange(100))).save(tmp_path / "m")
    live = rec.select_prompts(np.arange(100, 200))
    texts = list(live.texts)
    truth = live.dense()
    logs = tmp_path / "logs"
    app = create_app(tmp_path / "m", policy="epsilon-greedy:eps=0.5", log_dir=logs)
    with TestClient(app) as c:
        r = c.post("/v1/recommend", json={"prompts": texts, "k": 1})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        props = [x["propensity"] for x in results]
        assert all(0 < p <= 1 for p in props) and min(props) < 1  # it explored
        for i, x in enumerate(results[:80]):
            j = live.llm_names.index(x["chosen"])
            f = c.post("/v1/feedback", json={"decision_id": x["decision_id"],
                                             "score": float(truth[i, j])})
            assert f.status_code == 200, f.text
        bad = c.post("/v1/feedback", json={"decision_id": "0" * 32, "score": 1.0})
        assert 400 <= bad.status_code < 500 and "decision_id" in bad.text
        app.state.decision_log.flush()
    t = read_decisions(logs)
    assert len(t) == 100 and int(t["outcome"].notna().sum()) == 80
    assert t["policy"].iloc[0] == "epsilon-greedy:eps=0.5"
    ids = {x["decision_id"] for x in results}
    assert set(t["decision_id"]) == ids
    got = t.set_index("decision_id")["chosen"].to_dict()
    assert all(got[x["decision_id"]] == x["chosen"] for x in results)
    res = evaluate_logs(t, make_router("knn").fit(rec.select_prompts(np.arange(100))),
                        n_boot=50)
    assert res["support_checked"] == "exact" and res["unsupported_mass"] == 0
    refit = fit_logged(make_router("linear"), t)
    assert refit.logged_fit_["n_decisions"] == 80
