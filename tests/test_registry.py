import functools
import http.server
import threading

import pytest

from llmrec import datasets
from llmrec.data.registry import get_spec
from llmrec.errors import ConfigError, DatasetNotFoundError, UnknownIdError


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No shared data, an empty cache, no mirror: only what a test puts in place."""
    monkeypatch.delenv("LLMREC_SHARED_DATA", raising=False)
    monkeypatch.delenv("LLMREC_DATA_URL", raising=False)
    monkeypatch.setenv("LLMREC_DATA_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("llmrec.data.registry.REPO_ROOT", tmp_path / "norepo")
    return tmp_path


def test_list_datasets_has_urls_and_licences():
    names = {d["name"]: d for d in datasets.list_datasets()}
    for n in ["mmlu-pro", "routerdc", "routerbench", "llmrouter", "routellm-mmlu",
              "embedllm-sample", "routereval:<benchmark>", "synthetic"]:
        assert n in names and names[n]["licence"]
    assert all(u.startswith("https://raw.githubusercontent.com/")
               for u in names["routerdc"]["urls"].values())
    assert len(names["routellm-mmlu"]["files"]) == 57


def test_synthetic_and_unknown():
    assert datasets.load("synthetic").shape == datasets.make_synthetic().shape
    with pytest.raises(UnknownIdError, match="unknown dataset 'nope'"):
        datasets.load("nope")
    with pytest.raises(ConfigError):
        datasets.load("mmlu-pro", split="train")


def test_load_by_name_with_split(shared_data):
    tr = datasets.load("routerdc:train", data_dir=shared_data)
    te = datasets.load("routerdc", data_dir=shared_data, split="test")
    assert set(tr.prompts.split) == {"train"} and set(te.prompts.split) == {"test"}
    assert tr.n_prompts + te.n_prompts == 20600
    with pytest.raises(ConfigError):
        datasets.load("routerdc:train", split="test", data_dir=shared_data)


def test_dataset_folder_as_data_dir_and_paths(shared_data):
    rec = datasets.load("embedllm-sample", data_dir=shared_data / "llm2vec")
    assert rec.shape == (1000, 24)
    assert datasets.load(shared_data / "llm2vec" / "triple_correctness.csv").shape == (1000, 24)
    assert datasets.load(str(shared_data / "llmrouter")).n_llms == 9
    assert datasets.load(shared_data / "routerdc" / "routerbench_zs").cost is not None
    assert datasets.load(shared_data / "routereval_sample" / "router_extended_data.pkl",
                         split="test").n_prompts == 2
    assert datasets.load(shared_data / "mmlu_pro" / "correctness_matrix.csv").n_llms == 29


def test_env_var_lookup(shared_data, isolated, monkeypatch):
    with pytest.raises(DatasetNotFoundError):
        datasets.load("embedllm-sample", download_ok=False)
    monkeypatch.setenv("LLMREC_SHARED_DATA", str(shared_data))
    assert datasets.load("embedllm-sample").n_llms == 24


def test_not_found_message(isolated):
    with pytest.raises(DatasetNotFoundError) as e:
        datasets.load("mmlu-pro")  # derived files: no upstream URL, no mirror
    msg = str(e.value)
    assert "mmlu_pro/correctness_matrix.csv" in msg and str(isolated / "cache") in msg
    assert "LLMREC_DATA_URL" in msg
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        datasets.load(str(isolated / "missing.csv"))


@pytest.fixture
def local_server(shared_data):
    handler = functools.partial(_QuietHandler, directory=str(shared_data))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_into_cache(isolated, local_server, monkeypatch):
    monkeypatch.setenv("LLMREC_DATA_URL", local_server)
    rec = datasets.load("llmrouter", split="test")
    assert rec.n_prompts == 500 and rec.llms["price_input"].notna().all()
    cache = isolated / "cache"
    assert (cache / "llmrouter" / "default_llm.json").is_file()
    assert not [p for p in cache.rglob(".*") if p.is_file()]  # no temp files left
    # second load: from the cache, no server needed
    monkeypatch.setenv("LLMREC_DATA_URL", "http://127.0.0.1:9/")
    assert datasets.load("llmrouter", split="test").n_prompts == 500


def test_download_failure_is_dataset_not_found(isolated):
    with pytest.raises(DatasetNotFoundError, match="download failed"):
        datasets.load("embedllm-sample", base_url="http://127.0.0.1:9")
    assert not (isolated / "cache" / "llm2vec" / "triple_correctness.csv").exists()


def test_routereval_name(tmp_path):
    rec = datasets.make_synthetic(30, 3, seed=0)
    rec.prompts["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    from llmrec.data.formats import write_routereval
    write_routereval(rec, tmp_path / "router_dataset" / "toy_router_dataset.pkl")
    back = datasets.load("routereval:toy", data_dir=tmp_path)
    assert back.equals(rec)
    assert datasets.load("routereval:toy:val", data_dir=tmp_path).n_prompts == 5
    assert get_spec("routereval:toy").files == ("router_dataset/toy_router_dataset.pkl",)


def test_name_wins_over_same_named_folder(isolated, monkeypatch):
    (isolated / "synthetic").mkdir()
    assert datasets.load("synthetic").shape == datasets.make_synthetic().shape
    rec = datasets.make_synthetic(10, 2, seed=0)
    rec.save(isolated / "synthetic" / "r")
    assert datasets.load("./synthetic/r").shape == (10, 2)
    assert datasets.load(isolated / "synthetic" / "r").shape == (10, 2)
