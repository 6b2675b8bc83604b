"""run_bench end to end on a long CSV written by hand, and the demo."""

import json

import numpy as np
import pytest

from llmrec.encoders import TfidfEncoder
from llmrec.errors import ConfigError
from llmrec.evaluation import run_bench, run_demo

TOPICS = {"math": "solve equation integer root sum", "law": "court contract judge appeal tort",
          "code": "python function loop array string"}


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
    """A directory with records.csv (prompt_id, llm, score) and prompts.csv (text)."""
    d = tmp_path_factory.mktemp("longcsv")
    rng = np.random.default_rng(0)
    strengths = {"alpha": {"math": 0.9, "law": 0.2, "code": 0.5},
                 "beta": {"math": 0.2, "law": 0.9, "code": 0.5},
                 "gamma": {"math": 0.5, "law": 0.5, "code": 0.9},
                 "delta": {"math": 0.4, "law": 0.4, "code": 0.4}}
    rec_lines, prompt_lines = ["prompt_id,llm,score"], ["prompt_id,text,benchmark"]
    for i in range(150):
        topic = list(TOPICS)[i % 3]
        words = rng.choice(TOPICS[topic].split(), size=6)
        prompt_lines.append(f"q{i:03d},{' '.join(words)} question {i},{topic}")
        for llm, s in strengths.items():
            rec_lines.append(f"q{i:03d},{llm},{int(rng.random() < s[topic])}")
    (d / "records.csv").write_text("\n".join(rec_lines) + "\n")
    (d / "prompts.csv").write_text("\n".join(prompt_lines) + "\n")
    return d


def enc():
    return TfidfEncoder(dim=16, n_features=2 ** 12)


def _figures(res):
    return {k: res[k] for k in ("settings", "data", "results", "table", "details")}


def test_bench_cold_prompt_end_to_end(csv_dir, tmp_path):
    out = tmp_path / "b1"
    res = run_bench(str(csv_dir), "best-single,knn,oracle", protocol="cold-prompt",
                    encoder=enc(), out_dir=out, n_boot=50, show_progress=False, seed=7,
                    test=0.2)
    assert (out / "results.md").is_file() and (out / "selection_share.png").is_file()
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["settings"]["seed"] == 7 and on_disk["settings"]["protocol"] == "cold-prompt"
    assert on_disk["versions"]["numpy"] == np.__version__ and "llmrec" in on_disk["versions"]
    assert on_disk["data"]["n_prompts"] == 150 and on_disk["data"]["n_llms"] == 4
    rows = {r["router"]: r for r in on_disk["results"]}
    assert set(rows) == {"best-single", "knn", "oracle"}
    assert rows["oracle"]["mu"] >= rows["knn"]["mu"] >= 0
    # knn reads the topic from the text and beats the best single LLM here
    assert rows["knn"]["mu"] > rows["best-single"]["mu"]
    md = (out / "results.md").read_text()
    assert "| router |" in md and "knn" in md
    assert res.to_string() == md.rstrip("\n")
    again = run_bench(str(csv_dir), "best-single,knn,oracle", protocol="cold-prompt",
                      encoder=enc(), out_dir=tmp_path / "b2", n_boot=50, show_progress=False,
                      seed=7, test=0.2)
    assert _figures(again) == _figures(res)


def test_bench_routereval_and_scaling(csv_dir, tmp_path):
    res = run_bench(str(csv_dir), ["best-single", "knn", "oracle"], protocol="routereval",
                    encoder=enc(), out_dir=tmp_path / "re", sizes="3", n_boot=0,
                    show_progress=False, pool_kwargs={"n_draws": 20})
    assert {r["m"] for r in res["results"]} == {3}
    assert {r["router"] for r in res["table"]} == {"best-single", "knn", "oracle"}
    assert "mu_3" in res["table"][0]
    assert "RouterEval table" in (tmp_path / "re" / "results.md").read_text()
    sc = run_bench(str(csv_dir), ["best-single"], protocol="scaling", out_dir=tmp_path / "sc",
                   sizes=[2, 4], n_repeats=2, show_progress=False)
    assert (tmp_path / "sc" / "scaling_mu.png").stat().st_size > 0
    assert {r["router"] for r in sc["results"]} == {"best-single", "oracle", "random"}


def test_bench_errors(csv_dir, tmp_path):
    with pytest.raises(ConfigError, match="protocol"):
        run_bench(str(csv_dir), ["best-single"], protocol="nope", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown router"):
        run_bench(str(csv_dir), ["no-such-router"], protocol="cold-prompt", out_dir=tmp_path,
                  show_progress=False, n_boot=0)


def test_demo_small(tmp_path, capsys):
    res = run_demo(out_dir=tmp_path / "demo", seed=0, quiet=True, n_prompts=240, n_llms=5)
    assert capsys.readouterr().out == ""
    assert (tmp_path / "demo" / "scaling.png").stat().st_size > 0
    t = res["table"]
    assert {"best-single", "oracle", "random"} <= set(t.index)
    assert {"mu", "vb", "hit@3", "hit@3_low", "hit@3_high"} <= set(t.columns)
    assert len(res["top3"]) == 3 and all(len(v) == 3 for v in res["top3"].values())
    assert res.to_string().startswith("router")
