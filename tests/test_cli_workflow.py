"""The CLI workflow pieces of issue 10: split -> fit -> evaluate with the training-prompt
overlap warning, precomputed embeddings as an encoder, the embedding cache on by
default, the progress helper."""

from __future__ import annotations

import json

import pytest

from llmrec import _progress, cli
from llmrec.datasets import make_synthetic
from llmrec.routers import load_router


def call(capsys, *args):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("wf")
    make_synthetic(120, 4, n_topics=3, seed=1).to_long(with_text=True).to_csv(
        d / "r.csv", index=False)
    return d / "r.csv"


def test_split_fit_evaluate_warns_on_training_prompts(csv, tmp_path, capsys):
    code, out, _ = call(capsys, "-q", "split", "--data", csv, "--protocol", "cold-prompt",
                        "--seed", "3", "--out", tmp_path / "s")
    assert code == 0 and "test: 12 prompts" in out
    meta = json.loads((tmp_path / "s" / "split.json").read_text())
    assert meta["seed"] == 3 and meta["parts"]["train"]["n_prompts"] == 96
    assert call(capsys, "-q", "fit", "--data", tmp_path / "s" / "train", "--val",
                tmp_path / "s" / "val", "--router", "knn", "--param", "k_grid=[3,5]",
                "--out", tmp_path / "m")[0] == 0
    r = load_router(tmp_path / "m")
    assert len(r.train_prompt_hashes_["ids"]) == 96
    assert r.train_summary_["prompt_fingerprint"]
    # held-out prompts: no warning, no overlap
    code, out, err = call(capsys, "evaluate", "--model", tmp_path / "m", "--data",
                          tmp_path / "s" / "test", "--json")
    assert code == 0 and "warning" not in err
    assert json.loads(out)["n_train_overlap"] == 0
    # the whole data set: 96 of 120 prompts were trained on
    code, out, err = call(capsys, "evaluate", "--model", tmp_path / "m", "--data", csv,
                          "--json")
    assert code == 0 and "warning: 96 of 120 prompts" in err
    assert json.loads(out)["n_train_overlap"] == 96
    code, out, err = call(capsys, "evaluate", "--model", tmp_path / "m", "--data", csv,
                          "--json", "--exclude-train")
    assert code == 0 and json.loads(out)["n_prompts"] == 24


def test_split_cold_llm_and_routereval(csv, tmp_path, capsys):
    code, out, _ = call(capsys, "-q", "split", "--data", csv, "--protocol", "cold-llm",
                        "--held-out", "1", "--out", tmp_path / "c")
    assert code == 0 and {"train", "probe", "test"} <= {p.name for p in
                                                         (tmp_path / "c").iterdir()}
    assert call(capsys, "-q", "split", "--data", csv, "--protocol", "routereval",
                "--out", tmp_path / "r")[0] == 0


def test_precomputed_encoder_from_encode(csv, tmp_path, capsys):
    assert call(capsys, "-q", "encode", csv, "--encoder-param", "dim=8", "--out",
                tmp_path / "e.npy")[0] == 0
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "linear", "--encoder",
                f"precomputed:{tmp_path / 'e.npy'}", "--out", tmp_path / "m")[0] == 0
    r = load_router(tmp_path / "m")
    assert r.featurizer_.encoder.type == "precomputed" and r.featurizer_.dim == 8
    code, out, err = call(capsys, "evaluate", "--model", tmp_path / "m", "--data", csv)
    assert code == 0 and "linear on 120 prompts" in out
    (tmp_path / "e.ids.json").unlink()
    code, _, err = call(capsys, "fit", "--data", csv, "--router", "linear", "--encoder",
                        f"precomputed:{tmp_path / 'e.npy'}", "--out", tmp_path / "m2")
    assert code == 1 and "e.ids.json" in err


def test_on_duplicate(tmp_path, capsys):
    f = tmp_path / "d.csv"
    f.write_text("prompt_id,llm,score,text\np1,a,1,hi there\np1,a,0,hi there\n"
                 "p1,b,1,hi there\np2,a,1,bye\np2,b,0,bye\n")
    code, _, err = call(capsys, "data", "info", f)
    assert code == 1 and "lines 2 and 3" in err and "--on-duplicate mean" in err
    assert call(capsys, "-q", "fit", "--data", f, "--on-duplicate", "mean", "--router",
                "best-single", "--out", tmp_path / "m")[0] == 0
    info = json.loads((tmp_path / "m" / "fit_info.json").read_text())
    assert info["on_duplicate"] == "mean"
    code, _, err = call(capsys, "fit", "--data", "synthetic", "--on-duplicate", "mean",
                        "--router", "best-single", "--out", tmp_path / "m2")
    assert code == 2 and "long tables" in err


def test_one_prompt_two_texts_and_empty_prompt(tmp_path, csv, capsys):
    f = tmp_path / "t.csv"
    f.write_text("prompt_id,llm,score,text\np1,a,1,hi\np2,a,0,yo\np1,b,0,hello\n")
    code, _, err = call(capsys, "data", "info", f)
    assert code == 1 and "'p1' has two different texts (line 2 and line 4" in err
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "best-single", "--out",
                tmp_path / "m")[0] == 0
    code, _, err = call(capsys, "recommend", "--model", tmp_path / "m", "  ")
    assert code == 2 and "prompt 1 is empty" in err


@pytest.mark.embed
def test_embedding_cache_on_by_default(csv, tmp_path, capsys, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "knn", "--encoder",
                "minilm", "--out", tmp_path / "m")[0] == 0
    shards = sorted((tmp_path / "cache").rglob("shard-*.npz"))
    assert len(shards) == 1
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "cache" not in json.dumps(man["featurizer"]["encoder"])  # no cache path saved
    # a refit reads every vector back: no new shard
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "knn", "--encoder",
                "minilm", "--out", tmp_path / "m2")[0] == 0
    assert sorted((tmp_path / "cache").rglob("shard-*.npz")) == shards
    code, out, _ = call(capsys, "cache", "info")
    assert code == 0 and "1 encoder(s)" in out
    code, out, _ = call(capsys, "cache", "clear")
    assert code == 0 and not list((tmp_path / "cache").rglob("shard-*.npz"))
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "knn", "--encoder",
                "minilm", "--no-cache", "--out", tmp_path / "m3")[0] == 0
    assert not list((tmp_path / "cache").rglob("shard-*.npz"))


def test_progress_lines_and_quiet(capsys, monkeypatch):
    monkeypatch.setattr(_progress, "_isatty", lambda: False)
    monkeypatch.setitem(_progress._STATE, "lines", True)
    monkeypatch.setitem(_progress._STATE, "quiet", False)
    assert sum(_progress.progress(range(4), desc="demo epochs", unit="epochs")) == 6
    err = capsys.readouterr().err
    assert "[llmrec] demo epochs: started (4 epochs)" in err
    assert "[llmrec] demo epochs: done 4/4 epochs in" in err
    with _progress.stage("fit x"):
        pass
    assert "[llmrec] fit x: done in" in capsys.readouterr().err
    monkeypatch.setitem(_progress._STATE, "quiet", True)
    list(_progress.progress(range(3), desc="q"))
    with _progress.stage("fit y"):
        pass
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(_progress._STATE, "quiet", False)
    monkeypatch.setitem(_progress._STATE, "lines", False)  # a library user's script: silent
    list(_progress.progress(range(3), desc="lib"))
    assert capsys.readouterr().err == ""


def test_progress_lines_from_a_cli_fit(csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_progress, "_isatty", lambda: False)
    code, _, err = call(capsys, "fit", "--data", csv, "--router", "mlp", "--param",
                        "max_epochs=3", "--out", tmp_path / "m")
    assert code == 0
    assert "[llmrec] mlp epochs: started (3 epochs)" in err and "done 3/3 epochs" in err
    code, _, err = call(capsys, "-q", "fit", "--data", csv, "--router", "mlp", "--param",
                        "max_epochs=3", "--out", tmp_path / "m")
    assert code == 0 and "[llmrec]" not in err


def test_a_long_table_header_is_not_sniffed_as_another_format(tmp_path, capsys):
    """prompt_id, llm, score win over EmbedLLM's model_id / prompt_id / label."""
    f = tmp_path / "r.csv"
    f.write_text("prompt_id,llm,score,model_id,label\np1,a,1,x,y\np1,b,0,x,y\n")
    code, out, err = call(capsys, "data", "info", f)
    assert code == 0, err
    assert "1 prompts x 2 LLMs" in out


def test_bench_jobs_match_a_serial_run(tmp_path, capsys):
    rec = make_synthetic(80, 4, n_topics=2, seed=0)
    rec.to_long(with_text=True).to_csv(tmp_path / "r.csv", index=False)
    args = ["-q", "bench", "--data", tmp_path / "r.csv", "--protocol", "cold-prompt",
            "--routers", "best-single,random", "--seeds", "2", "--n-boot", "0"]
    assert call(capsys, *args, "--out", tmp_path / "a")[0] == 0
    assert call(capsys, *args, "--jobs", "2", "--out", tmp_path / "b")[0] == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())["summary"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["summary"]
    assert a == b


def test_data_convert_imports_a_custom_long_table(tmp_path, capsys):
    raw = tmp_path / "raw.csv"
    raw.write_text("q,model,acc,text\nx,m1,1,hello there\nx,m2,0,hello there\n"
                   "y,m1,0,bye now\ny,m2,1,bye now\ny,m2,0,bye now\n")
    (tmp_path / "llms.csv").write_text("name,price_input,price_output\nm1,1,2\nm2,5,10\n")
    code, out, err = call(capsys, "data", "convert", raw, tmp_path / "rec", "--prompt-col",
                          "q", "--llm-col", "model", "--score-col", "acc", "--llms",
                          tmp_path / "llms.csv", "--on-duplicate", "mean")
    assert code == 0, err
    rec = cli.load_data(str(tmp_path / "rec"))
    assert rec.shape == (2, 2) and rec.dense()[1, 1] == 0.5
    assert list(rec.llms["price_output"]) == [2, 10] and rec.texts == ["hello there", "bye now"]
    code, _, err = call(capsys, "data", "convert", raw, tmp_path / "r2", "--llms",
                        tmp_path / "none.csv")
    assert code == 2 and "none.csv" in err


def test_data_convert_declares_the_score_kind(tmp_path, capsys):
    raw = tmp_path / "pref.csv"
    raw.write_text("prompt_id,llm,score,text\nx,ref,0.5,hi\nx,a,0.9,hi\ny,ref,0.5,yo\n"
                   "y,a,0.2,yo\n")
    code, _, err = call(capsys, "data", "convert", raw, tmp_path / "rec", "--score-kind",
                        "preference", "--reference-llm", "ref")
    assert code == 0, err
    rec = cli.load_data(str(tmp_path / "rec"))
    assert rec.score_kind == "preference" and rec.reference_llm == "ref"
    code, _, err = call(capsys, "data", "convert", raw, tmp_path / "r2", "--score-kind",
                        "prefrence")
    assert code == 2 and "preference" in err and "Traceback" not in err
    code, _, _ = call(capsys, "data", "convert", raw, tmp_path / "r3")
    assert code == 0 and cli.load_data(str(tmp_path / "r3")).score_kind == "graded"


def test_partial_fit_prompts_are_remembered():
    from llmrec.routers import make_router
    a = make_synthetic(30, 3, seed=0)
    long = make_synthetic(30, 3, seed=1).to_long(with_text=True)
    long["prompt_id"] = "new-" + long["prompt_id"]  # other ids, other texts
    b = cli._records_from_table(long, "b.csv")
    r = make_router("best-single").fit(a)
    assert not cli._seen_in_training(r, b).any()
    cli._remember_prompts(r, b)
    seen = cli._seen_in_training(r, b)
    assert seen.all() and cli._seen_in_training(r, a).all()


@pytest.mark.embed
def test_finetune_encoder_then_fit_and_recommend(csv, tmp_path, capsys, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    code, out, err = call(capsys, "finetune-encoder", csv, "--out", tmp_path / "ft",
                          "--epochs", "1", "--max-seconds", "60")
    assert code == 0, err
    assert "fine-tuned all-MiniLM-L6-v2 on" in out and "stopped by epochs" in out
    info = json.loads((tmp_path / "ft" / "llmrec_finetune.json").read_text())
    assert info["records"] and info["steps"] >= 1
    assert call(capsys, "-q", "fit", "--data", csv, "--router", "linear", "--encoder",
                tmp_path / "ft", "--out", tmp_path / "m")[0] == 0
    assert (tmp_path / "m" / "encoder_model" / "llmrec_finetune.json").is_file()
    code, out, err = call(capsys, "recommend", "--model", tmp_path / "m", "-k", "2",
                          "What is 2 + 2?")
    assert code == 0, err
    # a bad setting is one clear line, not a traceback
    code, _, err = call(capsys, "finetune-encoder", csv, "--out", tmp_path / "ft2",
                        "--layers", "0")
    assert code != 0 and "layers" in err and "Traceback" not in err
