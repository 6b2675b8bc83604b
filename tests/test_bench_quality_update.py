"""benchmarks/bench_quality.py --update: merging re-run rows into a saved table."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bq():
    spec = importlib.util.spec_from_file_location("bench_quality",
                                                  ROOT / "benchmarks" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _res(rows, seeds=(0, 1), auto=()):
    return {"meta": {"data": "d", "encoder": "union", "seeds": list(seeds),
                     "auto_tuning": list(auto)},
            "table": {k: {"vb_mean": v, "mu_mean": 0.5 * v} for k, v in rows.items()}}


def test_merge_replaces_rows_and_keeps_the_rest(bq):
    old = _res({"best-single": 1.0, "knn": 1.01, "als": 0.96, "auto": 1.03, "oracle": 1.3},
               auto=[{"full": {"margin": 0.1}}])
    new = _res({"best-single": 1.0, "als": 1.02, "textmf": 1.0})
    out = bq.merge_rows(old, new, "cmd --update")
    t = out["table"]
    assert list(t) == ["best-single", "knn", "als", "auto", "textmf", "oracle"]
    assert t["als"]["vb_mean"] == 1.02 and t["knn"]["vb_mean"] == 1.01
    # auto was not re-run: its tuning record stays
    assert out["meta"]["auto_tuning"] == [{"full": {"margin": 0.1}}]
    assert out["meta"]["updates"][-1]["rows"] == ["als", "textmf"]
    assert out["meta"]["updates"][-1]["cmd"] == "cmd --update"


def test_merge_refuses_other_splits(bq):
    old = _res({"best-single": 1.0, "als": 0.96})
    with pytest.raises(SystemExit, match="seeds"):
        bq.merge_rows(old, _res({"best-single": 1.0}, seeds=(0, 2)), "c")
    other = _res({"best-single": 1.0})
    other["table"]["best-single"]["mu_mean"] = 0.7
    with pytest.raises(SystemExit, match="splits differ"):
        bq.merge_rows(old, other, "c")


def test_update_without_a_saved_table_stops_before_fitting(bq, monkeypatch, tmp_path):
    monkeypatch.setattr(bq, "HERE", tmp_path)
    monkeypatch.setattr(bq, "run", lambda *a, **k: pytest.fail("fitted before checking"))
    with pytest.raises(SystemExit, match="no saved table"):
        bq.main(["--data", "routerdc", "--routers", "als", "--update"])
