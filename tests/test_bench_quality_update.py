"""benchmarks/bench_quality.py --update: merging re-run rows into a saved table."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A script of benchmarks/ loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bq():
    return _script("bench_quality")


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
    # the values tune_router chose for re-run tuned rows are kept, per row
    old["meta"]["tuned_chosen"] = {"als (tuned)": [{"factors": 16}]}
    new["meta"]["tuned_chosen"] = {"bpr (tuned)": [{"factors": 64}]}
    chosen = bq.merge_rows(old, new, "cmd")["meta"]["tuned_chosen"]
    assert chosen == {"als (tuned)": [{"factors": 16}], "bpr (tuned)": [{"factors": 64}]}


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


def test_results_md_holds_the_target_table_of_the_saved_tables():
    # the issue-12 target table in RESULTS.md is what targets_table.py builds from the
    # saved quality/*.json tables: a re-run table that was not carried into it fails here
    tt = _script("targets_table")
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    start, end = text.index(tt.START) + len(tt.START), text.index(tt.END)
    assert text[start:end].strip() == tt.markdown().strip(), \
        "run `python benchmarks/targets_table.py --write`"
    cf = _script("cf_gap_table")
    start, end = text.index(cf.START) + len(cf.START), text.index(cf.END)
    assert text[start:end].strip() == cf.markdown().strip(), \
        "run `python benchmarks/targets_table.py --write`"


def test_target_table_judges_never_below_on_every_seed(tmp_path, monkeypatch):
    import json
    tt = _script("targets_table")
    q = tmp_path / "quality"
    q.mkdir()
    row = {"vb_mean": 1.01, "vb_std": 0.01, "vb": [1.02, 1.02, 0.99], "secs_mean": 3.0}
    (q / "routerbench-union.json").write_text(json.dumps({"table": {"auto": row}}))
    monkeypatch.setattr(tt, "HERE", tmp_path)
    md = tt.markdown()
    line = next(s for s in md.splitlines() if s.startswith("| RouterBench `auto` never"))
    assert "lowest seed: 0.9900" in line and line.endswith("| no |")
    row["vb"] = [1.0, 1.0, 1.03]
    (q / "routerbench-union.json").write_text(json.dumps({"table": {"auto": row}}))
    line = next(s for s in tt.markdown().splitlines()
                if s.startswith("| RouterBench `auto` never"))
    assert line.endswith("| yes |")
    # --write replaces only the marked block
    res = tmp_path / "RESULTS.md"
    res.write_text(f"before\n{tt.START}\nold\n{tt.END}\nafter\n")
    assert tt.write(res)
    out = res.read_text()
    assert out.startswith("before\n") and out.endswith("after\n") and "old" not in out


def test_no_write_leaves_the_saved_table_and_results_alone(bq, tmp_path, monkeypatch):
    monkeypatch.setattr(bq, "HERE", tmp_path)
    args = ["--data", "synthetic-preference", "--seeds", "0", "--routers", "best-single"]
    bq.main(args + ["--no-write"])
    assert not list(tmp_path.rglob("*.json")) and not (tmp_path / "RESULTS.md").exists()
    bq.main(args)
    assert (tmp_path / "quality" / "synthetic-preference.json").is_file()
    assert "<!-- bench_quality:synthetic-preference -->" in (tmp_path / "RESULTS.md").read_text()


def test_newcomer_cli_ratios_against_best_single(tmp_path, monkeypatch):
    # run() shells out to `llmrec split / fit / evaluate`; here the CLI is replaced by
    # canned answers to check what the table is made of: each router's mu over the
    # best-single mu of the same split, and the splits where routing lost
    import json
    nc = _script("newcomer_cli")
    mus = {("0", "best-single"): 0.70, ("0", "knn"): 0.63, ("0", "linear"): 0.71,
           ("0", "auto"): 0.77, ("1", "best-single"): 0.80, ("1", "knn"): 0.84,
           ("1", "linear"): 0.79, ("1", "auto"): 0.80}
    calls = []

    def fake(*args):
        calls.append(args[0])
        if args[0] == "evaluate":
            seed, router = Path(args[2]).parent.name.split("-")[-1], Path(args[2]).name
            return json.dumps({"mu": mus[(seed, router)]})
        return ""
    monkeypatch.setattr(nc, "llmrec", fake)
    res = nc.run(["d"], [0, 1], tmp_path)["d"]
    assert calls.count("split") == 2 and calls.count("fit") == 8
    assert res["knn"]["vs_best_single"] == pytest.approx([0.9, 1.05])
    assert res["knn"]["seeds_below_1"] == 1 and res["linear"]["seeds_below_1"] == 1
    assert res["auto"]["seeds_below_1"] == 0 and res["auto"]["mean"] == pytest.approx(1.05)
    md = nc.markdown({"d": res}, [0, 1], "cmd", 1.0)
    assert "| d | 0.9750 ± 0.1061 [1] |" in md
