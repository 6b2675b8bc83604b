"""The dataset registry: named public datasets, where to find them, how to read them.

``load(name_or_path)`` looks for a dataset's files, in order, in

1. the ``data_dir`` argument (a data root laid out as ``../shared/data``, or the
   dataset's own folder);
2. ``$LLMREC_SHARED_DATA``;
3. ``../shared/data`` relative to the current directory and to the repository;
4. the cache ``$LLMREC_DATA_HOME`` (default ``~/.cache/llmrec``);
5. a download into the cache (``urllib``, atomic rename) from ``$LLMREC_DATA_URL``
   (a mirror with the ``shared/data`` layout) or else from the source repository at
   the pinned commit;

and otherwise raises :class:`DatasetNotFoundError` saying where it looked.
"""

from __future__ import annotations

import csv
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, DataFormatError, DatasetNotFoundError, UnknownIdError
from .records import PerformanceRecords
from . import formats as F

REPO_ROOT = Path(__file__).resolve().parents[2]
_GH = "https://raw.githubusercontent.com"


def _gh(repo: str, commit: str, path: str) -> str:
    return f"{_GH}/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    ``files`` are paths relative to a data root (the ``shared/data`` layout); ``urls``
    maps each to its public download address (None where the file is derived and
    has no upstream copy); ``reader(root, split)`` builds the records.
    """

    name: str
    description: str
    files: tuple[str, ...]
    reader: Callable[[Path, str | None], PerformanceRecords]
    source: str
    licence: str
    urls: dict = field(default_factory=dict)
    splits: tuple[str, ...] = ()


_ROUTELLM = ("lm-sys/RouteLLM", "0b64fdaf")
_ROUTERDC = ("shuhao02/RouterDC", "0e63989c")
_LLMROUTER = ("ulab-uiuc/LLMRouter", "4e7a7969")
_LLM2VEC = ("thwu1/llm2vec", "df823927bf7b025f169fa00253b9edf02c6f9aa1")
_MMLU_PRO = ("TIGER-AI-Lab/MMLU-Pro", "f418b116")

_MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology "
    "college_chemistry college_computer_science college_mathematics college_medicine "
    "college_physics computer_security conceptual_physics econometrics electrical_engineering "
    "elementary_mathematics formal_logic global_facts high_school_biology "
    "high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics "
    "high_school_mathematics high_school_microeconomics high_school_physics "
    "high_school_psychology high_school_statistics high_school_us_history "
    "high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous "
    "moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting "
    "professional_law professional_medicine professional_psychology public_relations "
    "security_studies sociology us_foreign_policy virology world_religions").split()
_ROUTERDC_FILES = ("MATH_prealgebra arc_challenge_test arc_challenge_train arc_easy_test "
                   "arc_easy_train ceval cmmlu_test cmmlu_train gsm8k-test gsm8k-train "
                   "humaneval_test humaneval_train javascript mbpp mmlu_test mmlu_train").split()
_ROUTERBENCH_FILES = [f"{b}_{s}" for b in ("arc_challenge", "mbpp", "winograde")
                      for s in ("train", "test")]


def _spec_list() -> list[DatasetSpec]:
    mmlu = tuple(f"routellm/mmlu_responses/mmlu_{s}.csv" for s in _MMLU_SUBJECTS)
    rdc = tuple(f"routerdc/split2_model7/{f}.json" for f in _ROUTERDC_FILES)
    rb = tuple(f"routerdc/routerbench_zs/{f}.csv" for f in _ROUTERBENCH_FILES)
    return [
        DatasetSpec(
            "mmlu-pro", "MMLU-Pro: 12,032 questions x 29 LLMs, binary (pred == answer), "
            "text + 14 categories",
            ("mmlu_pro/correctness_matrix.csv", "mmlu_pro/questions.jsonl"),
            lambda root, split: F.read_mmlu_pro(root / "mmlu_pro"),
            f"{_MMLU_PRO[0]} @ {_MMLU_PRO[1]} (eval_results/; matrix derived from its zips)",
            "Apache-2.0",
            # derived files: no upstream copy (build them from eval_results/*.zip with
            # read_mmlu_pro_zips, or use a mirror through $LLMREC_DATA_URL)
            {}),
        DatasetSpec(
            "routerdc", "RouterDC: ~20,600 prompts x 7 open 7-8B LLMs, scores in [0, 1], "
            "10 benchmarks, train/test", rdc,
            lambda root, split: F.read_routerdc(root / "routerdc/split2_model7", split=split),
            f"{_ROUTERDC[0]} @ {_ROUTERDC[1]} (datasets/split2_model7)", "none stated",
            {f: _gh(*_ROUTERDC, "datasets/" + f[len("routerdc/"):]) for f in rdc},
            ("train", "test")),
        DatasetSpec(
            "routerbench", "RouterBench subsets (RouterDC copy): 3,178 prompts x 11 LLMs, "
            "0/1 scores, per-record cost, ARC-C / MBPP / Winogrande, train/test", rb,
            lambda root, split: F.read_routerbench(root / "routerdc/routerbench_zs", split=split),
            f"{_ROUTERDC[0]} @ {_ROUTERDC[1]} (datasets/routerbench_zs)", "none stated",
            {f: _gh(*_ROUTERDC, "datasets/" + f[len("routerdc/"):]) for f in rb},
            ("train", "test")),
        DatasetSpec(
            "llmrouter", "LLMRouter DC-router data: 5,608 train + 500 test prompts x 9 LLMs, "
            "prices per 1M tokens",
            ("llmrouter/dcrouter_train.json", "llmrouter/dcrouter_test.json",
             "llmrouter/default_llm.json"),
            lambda root, split: F.read_llmrouter(root / "llmrouter", split=split),
            f"{_LLMROUTER[0]} @ {_LLMROUTER[1]}", "MIT",
            {"llmrouter/dcrouter_train.json":
             _gh(*_LLMROUTER, "data/dcrouter_preprocessed/train.json"),
             "llmrouter/dcrouter_test.json":
             _gh(*_LLMROUTER, "data/dcrouter_preprocessed/test.json"),
             "llmrouter/default_llm.json": _gh(
                 *_LLMROUTER, "llmrouter/data/example_data/llm_candidates/default_llm.json")},
            ("train", "test")),
        DatasetSpec(
            "routellm-mmlu", "RouteLLM MMLU: 14,042 prompts x 2 LLMs (Mixtral-8x7B, "
            "GPT-4-1106), binary, 57 subjects", mmlu,
            lambda root, split: F.read_routellm_csv(root / "routellm/mmlu_responses"),
            f"{_ROUTELLM[0]} @ {_ROUTELLM[1]} (routellm/evals/mmlu/responses)", "Apache-2.0",
            {f: _gh(*_ROUTELLM, "routellm/evals/mmlu/responses/" + Path(f).name) for f in mmlu}),
        DatasetSpec(
            "routellm-gsm8k", "RouteLLM GSM8K: 1,319 prompts x 2 LLMs, binary",
            ("routellm/gsm8k_gsm8k_responses.csv",),
            lambda root, split: F.read_routellm_csv(root / "routellm/gsm8k_gsm8k_responses.csv",
                                                    benchmark="gsm8k", name="routellm-gsm8k"),
            f"{_ROUTELLM[0]} @ {_ROUTELLM[1]} (routellm/evals/gsm8k)", "Apache-2.0",
            {"routellm/gsm8k_gsm8k_responses.csv":
             _gh(*_ROUTELLM, "routellm/evals/gsm8k/gsm8k_responses.csv")}),
        DatasetSpec(
            "routellm-mt-bench", "RouteLLM MT-Bench: 80 questions x 2 turns x 2 LLMs, GPT-4 "
            "judge scores 1-10",
            ("routellm/mt_bench_judgements.jsonl", "routellm/mt_bench_question.jsonl"),
            lambda root, split: F.read_mt_bench(root / "routellm"),
            f"{_ROUTELLM[0]} @ {_ROUTELLM[1]} (routellm/evals/mt_bench)", "Apache-2.0",
            {"routellm/mt_bench_judgements.jsonl":
             _gh(*_ROUTELLM, "routellm/evals/mt_bench/judgements.jsonl")}),
        DatasetSpec(
            "embedllm-sample", "EmbedLLM / llm2vec sample: 1,000 MMLU prompts x 24 anonymous "
            "LLMs, binary, no text", ("llm2vec/triple_correctness.csv",),
            lambda root, split: F.read_embedllm(root / "llm2vec/triple_correctness.csv"),
            f"{_LLM2VEC[0]} @ {_LLM2VEC[1][:8]} (data/)", "none stated",
            {"llm2vec/triple_correctness.csv": _gh(*_LLM2VEC, "data/triple_correctness.csv")}),
        DatasetSpec(
            "routereval-sample", "A 20 x 2 RouterEval-like pickle (format sample only)",
            ("routereval_sample/router_extended_data.pkl",),
            lambda root, split: F.read_routereval(
                root / "routereval_sample/router_extended_data.pkl"),
            "fidd1er5381/RouterEval @ 2d2d7b2e (a fork)", "none stated", {},
            ("train", "val", "test")),
    ]


def _routereval_spec(benchmark: str) -> DatasetSpec:
    rel = f"router_dataset/{benchmark}_router_dataset.pkl"
    return DatasetSpec(
        f"routereval:{benchmark}", f"RouterEval router dataset for {benchmark} (candidate "
        "pools, train/val/test)", (rel,),
        lambda root, split: F.read_routereval(root / rel),
        "MilkThink-Lab/RouterEval (arXiv 2503.10657)", "see the RouterEval repository",
        # RouterEval publishes these pickles outside git; use a mirror ($LLMREC_DATA_URL)
        {}, ("train", "val", "test"))


def _synthetic_spec() -> DatasetSpec:
    def read(root, split):
        from .synthetic import make_synthetic
        return make_synthetic()
    return DatasetSpec("synthetic", "make_synthetic() defaults: seeded generative model, no "
                       "files needed", (), read, "llmrec", "same as llmrec")


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered under ``name`` (``routereval:<benchmark>`` too)."""
    key = name.strip().lower()
    if key == "synthetic":
        return _synthetic_spec()
    if key.startswith("routereval:"):
        bench = name.split(":", 1)[1].strip()
        if not bench:
            raise UnknownIdError("routereval: needs a benchmark, e.g. 'routereval:mmlu'")
        return _routereval_spec(bench)
    for s in _spec_list():
        if s.name == key:
            return s
    raise UnknownIdError(f"unknown dataset '{name}'; known: "
                         f"{', '.join(s['name'] for s in list_datasets())}, or a file / "
                         "directory path")


def list_datasets() -> list[dict]:
    """Registered datasets: name, description, source, licence, splits, download URLs.

    Examples
    --------
    >>> from llmrec.datasets import list_datasets
    >>> "mmlu-pro" in [d["name"] for d in list_datasets()]
    True
    """
    specs = _spec_list() + [_routereval_spec("<benchmark>"), _synthetic_spec()]
    return [{"name": s.name, "description": s.description, "source": s.source,
             "licence": s.licence, "splits": list(s.splits), "files": list(s.files),
             "urls": dict(s.urls)} for s in specs]


# ---------------------------------------------------------------- locating
def data_home() -> Path:
    """The download cache: ``$LLMREC_DATA_HOME`` or ``~/.cache/llmrec``."""
    env = os.environ.get("LLMREC_DATA_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llmrec"


def candidate_roots(data_dir=None) -> list[Path]:
    """Data roots searched, in order (the cache last)."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    env = os.environ.get("LLMREC_SHARED_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(REPO_ROOT.parent / "shared" / "data")
    roots.append(data_home())
    out = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def _has_all(root: Path, files) -> bool:
    return all((root / f).is_file() for f in files)


def locate(spec: DatasetSpec, data_dir=None) -> Path | None:
    """The first data root holding all of ``spec.files`` (no download), or None.

    ``data_dir`` may also be the dataset's own folder (e.g. ``.../shared/data/mmlu_pro``).
    """
    for root in candidate_roots(data_dir):
        if _has_all(root, spec.files):
            return root
    if data_dir is not None and spec.files:
        # the dataset's own folder: files' first path component is the folder name
        d = Path(data_dir).expanduser()
        top = Path(spec.files[0]).parts[0]
        if all(Path(f).parts[0] == top for f in spec.files) and _has_all(d.parent, spec.files) \
                and d.name == top:
            return d.parent
    return None


def _download_file(url: str, dest: Path, timeout: float = 60.0) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def download(spec: DatasetSpec, base_url: str | None = None, cache: Path | None = None,
             timeout: float = 60.0) -> Path:
    """Download ``spec``'s files into the cache; returns the cache root.

    With ``base_url`` (or ``$LLMREC_DATA_URL``) every file is fetched from
    ``<base_url>/<relative path>`` (a mirror of the ``shared/data`` layout); otherwise
    from its source repository. Each file is written to a temporary name and renamed,
    so an interrupted download never leaves a partial file.
    """
    cache = Path(cache) if cache is not None else data_home()
    base_url = base_url or os.environ.get("LLMREC_DATA_URL")
    for rel in spec.files:
        dest = cache / rel
        if dest.is_file():
            continue
        if base_url:
            url = base_url.rstrip("/") + "/" + urllib.request.pathname2url(rel).lstrip("/")
        else:
            url = spec.urls.get(rel)
        if not url:
            raise DatasetNotFoundError(
                f"dataset '{spec.name}': no public download address for '{rel}' (it is derived "
                "or published outside git); set LLMREC_DATA_URL to a mirror or place the file "
                f"under one of the data roots")
        _download_file(url, dest, timeout=timeout)
    return cache


def load(name_or_path, data_dir=None, split: str | None = None, *, download_ok: bool = True,
         base_url: str | None = None) -> PerformanceRecords:
    """Load a registered dataset by name, or records from a file / directory path.

    Parameters
    ----------
    name_or_path : str or Path
        A registered name (see :func:`list_datasets`), optionally with a split
        (``"routerdc:train"``), ``"routereval:<benchmark>"``, ``"synthetic"``; or a
        path to a file or directory in any supported format.
    data_dir : str or Path, optional
        A data root searched first (or the dataset's own folder).
    split : str, optional
        ``train`` / ``test`` (/ ``val``) for datasets that have splits.
    download_ok : bool
        Try to download into the cache when the files are nowhere local.
    base_url : str, optional
        Mirror base URL (default ``$LLMREC_DATA_URL``).

    Examples
    --------
    >>> from llmrec.datasets import load
    >>> load("synthetic").shape
    (2000, 20)
    """
    if isinstance(name_or_path, PerformanceRecords):
        return name_or_path
    text = os.fspath(name_or_path)
    p = Path(text).expanduser()
    # a registered name wins over a same-named folder in the current directory
    if p.exists() and (isinstance(name_or_path, os.PathLike) or os.sep in text
                       or not _is_name(text)):
        rec = read_path(p)
        return _apply_split(rec, split, text)
    key = text
    if ":" in text and not text.lower().startswith("routereval:"):
        key, sp = text.split(":", 1)
        if split is not None and split != sp:
            raise ConfigError(f"'{text}' names split '{sp}' but split='{split}' was given")
        split = sp
    elif text.lower().startswith("routereval:") and text.count(":") == 2:
        key, split = text.rsplit(":", 1)[0], text.rsplit(":", 1)[1]
    try:
        spec = get_spec(key)
    except UnknownIdError:
        if os.sep in text or text.endswith((".csv", ".parquet", ".jsonl", ".json", ".pkl", ".zip")):
            raise DatasetNotFoundError(f"{text}: no such file or directory, and not a dataset "
                                       "name") from None
        raise
    if split is not None and spec.splits and split not in spec.splits:
        raise ConfigError(f"dataset '{spec.name}' has splits {list(spec.splits)}, not '{split}'")
    if split is not None and not spec.splits:
        raise ConfigError(f"dataset '{spec.name}' has no train/test split; split it with "
                          "llmrec.data.splits")
    if not spec.files:
        return spec.reader(Path("."), split)
    root = locate(spec, data_dir)
    err = None
    if root is None and download_ok:
        try:
            root = download(spec, base_url=base_url)
        except DatasetNotFoundError as e:
            err = str(e)
        except (urllib.error.URLError, OSError, ValueError) as e:
            err = f"download failed: {e}"
    if root is None:
        looked = "\n  ".join(str(r) for r in candidate_roots(data_dir))
        raise DatasetNotFoundError(
            f"dataset '{spec.name}' not found: need {', '.join(spec.files[:3])}"
            f"{' ...' if len(spec.files) > 3 else ''} under one of:\n  {looked}\n"
            f"{err + chr(10) if err else ''}"
            "Pass data_dir=, set LLMREC_SHARED_DATA to a folder holding it, or allow the "
            f"download (source: {spec.source})")
    rec = spec.reader(root, split)
    if split is not None and "split" in rec.prompts.columns and spec.name.startswith(
            ("routereval", "routereval-sample")):
        rec = _apply_split(rec, split, spec.name)
    return rec


def _is_name(text: str) -> bool:
    key = text.split(":", 1)[0] if not text.lower().startswith("routereval:") else text
    try:
        get_spec(key)
        return True
    except UnknownIdError:
        return False


def _apply_split(rec: PerformanceRecords, split, what) -> PerformanceRecords:
    if split is None:
        return rec
    if "split" not in rec.prompts.columns:
        raise ConfigError(f"{what}: the records have no 'split' column, cannot select '{split}'")
    mask = (rec.prompts["split"].astype(str) == split).to_numpy()
    if not mask.any():
        raise ConfigError(f"{what}: no prompt has split '{split}'; splits: "
                          f"{sorted(rec.prompts['split'].dropna().astype(str).unique())}")
    return rec.select_prompts(mask)


# ------------------------------------------------------------ format sniffing
def _csv_header(p: Path) -> list[str]:
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"{p}: cannot read the CSV header ({e})") from None


def read_path(path) -> PerformanceRecords:
    """Read records from a file or directory, guessing its format from names and headers.

    Recognised: a ``PerformanceRecords.save`` directory; a long table or a directory
    with ``records.*``; MMLU-Pro ``correctness_matrix.csv`` (or its folder) and native
    zips; RouterEval ``.pkl``; RouterBench, RouteLLM and EmbedLLM CSVs; RouterDC and
    LLMRouter JSON; MT-Bench judgements.

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> d = make_synthetic(10, 2, seed=0).save(tempfile.mkdtemp() + "/r")
    >>> read_path(d).shape
    (10, 2)
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetNotFoundError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "meta.json").is_file() and (p / "records.parquet").is_file() and \
                '"llmrec.PerformanceRecords"' in (p / "meta.json").read_text():
            return PerformanceRecords.load(p)
        if any((p / f"records{s}").is_file() for s in (".csv", ".parquet", ".jsonl", ".json")):
            return F.read_long(p)
        if (p / "correctness_matrix.csv").is_file():
            return F.read_mmlu_pro(p)
        if list(p.glob("model_outputs_*.zip")):
            return F.read_mmlu_pro_zips(p)
        if list(p.glob("dcrouter_*.json")):
            return F.read_llmrouter(p)
        if (p / "mt_bench_judgements.jsonl").is_file():
            return F.read_mt_bench(p)
        if list(p.glob("mmlu_*.csv")):
            return F.read_routellm_csv(p)
        csvs = sorted(p.glob("*.csv"))
        if csvs and any("|total_cost" in c for c in _csv_header(csvs[0])):
            return F.read_routerbench(p)
        if list(p.glob("*.json")):
            return F.read_routerdc(p)
        raise DataFormatError(f"{p}: cannot tell the format of this directory; give it a "
                              "records.csv (prompt_id, llm, score) or pass a file")
    suf = p.suffix.lower()
    if suf == ".pkl":
        return F.read_routereval(p)
    if suf == ".zip":
        return F.read_mmlu_pro_zips([p])
    if suf == ".json":
        if p.name == "default_llm.json":
            raise DataFormatError(f"{p}: an LLM price table, not records; load its folder")
        return F.read_llmrouter(p) if p.name.startswith("dcrouter_") else F.read_routerdc(p)
    if suf == ".jsonl" and "judgement" in p.name:
        return F.read_mt_bench(p)
    if suf == ".csv":
        head = _csv_header(p)
        hs = set(head)
        if {"prompt_id", "llm", "score"} <= hs:  # a long table's own header wins
            return F.read_long(p)
        if "question_id" in hs and any(h.endswith("shots") for h in head):
            return F.read_mmlu_pro(p)
        if any("|total_cost" in h for h in head):
            return F.read_routerbench(p)
        if {"model_id", "prompt_id", "label"} <= hs or (
                head and all(h.strip().isdigit() for h in head)):
            return F.read_embedllm(p)
        if "prompt" in hs and "score" not in hs and "llm" not in hs:
            return F.read_routellm_csv(p)
    return F.read_long(p)
