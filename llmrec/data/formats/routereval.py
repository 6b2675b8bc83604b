"""RouterEval ``router_dataset/<benchmark>_router_dataset.pkl``: read and write.

Layout (MilkThink-Lab/RouterEval)::

    {'easy': {3: {'all_strong': {'data': {'train_score', 'val_score', 'test_score'},
                                 'model': [names]}, 'all_weak': ..., 'strong_to_weak': ...},
              5: {...}},
     'hard': {10: {...}, 100: {...}, 1000: {...}},
     'split_index': {'train_indices', 'val_indices', 'test_indices'},
     'embedding':   {'train_embed', 'val_embed', 'test_embed'},
     'prompt':      {'train_prompt', 'val_prompt', 'test_prompt'}}

Each candidate pool ``level/k/group`` holds dense (n_prompts, n_candidates) score
arrays per split. Reading takes the union of the pools' LLMs (a model in two pools
must carry the same scores) and records the split in the prompt table's ``split``
column; :func:`routereval_pools` lists the pools. The small RouterEval-like sample
layout ``{'data': {'train_score', ...}, 'model': [...], 'prompt': {...}}`` is read as
one pool.

Pickles are read only through :class:`RestrictedUnpickler`, which rebuilds plain
containers and numpy arrays and refuses every other global, so loading a file never
runs code from it. :func:`write_routereval` adds one key, ``'llmrec'`` (plain lists:
prompt and LLM tables, name, score range), so that a round trip is exact;
RouterEval's own code ignores it.
"""

from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataFormatError
from ..records import PerformanceRecords
from ._io import as_path

SPLITS = ("train", "val", "test")
_META_KEY = "llmrec"
_RESERVED = {"split_index", "embedding", "prompt", _META_KEY}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # protocol <= 2 pickles store an array's bytes as _codecs.encode(str, 'latin1')
    ("_codecs", "encode"),
}
_ALLOWED_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                     "int", "float", "complex", "bool", "slice", "range"}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only plain containers and numpy arrays.

    Any other global (``os.system``, ``builtins.eval``, a class of some package, ...)
    raises :class:`DataFormatError` naming the file and the refused global, before
    anything is called.

    Examples
    --------
    >>> import io, pickle, numpy as np
    >>> blob = pickle.dumps({"a": np.arange(3)})
    >>> RestrictedUnpickler(io.BytesIO(blob), source="x.pkl").load()["a"]
    array([0, 1, 2])
    """

    def __init__(self, file, *, source: str = "pickle"):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return getattr(builtins, name)
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith("numpy"):
                # numpy 2 renamed numpy.core to numpy._core; accept pickles of either
                for mod in (module, module.replace("numpy.core", "numpy._core"),
                            module.replace("numpy._core", "numpy.core")):
                    try:
                        return getattr(importlib.import_module(mod), name)
                    except (ImportError, AttributeError):
                        continue
            return super().find_class(module, name)
        raise DataFormatError(
            f"{self.source}: refused to load global '{module}.{name}'; only plain containers "
            "and numpy arrays are allowed in a RouterEval pickle. The file may be malicious; "
            "do not open it with pickle.load")


def load_pickle_safely(path):
    """Load a pickle through :class:`RestrictedUnpickler` (plain data and numpy arrays only).

    Examples
    --------
    >>> import pickle, tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "d.pkl")
    >>> with open(f, "wb") as fh:
    ...     pickle.dump({"x": [1, 2]}, fh)
    >>> load_pickle_safely(f)
    {'x': [1, 2]}
    """
    p = as_path(path, "pickle file")
    raw = p.read_bytes()
    if not raw:
        raise DataFormatError(f"{p}: empty file")
    try:
        return RestrictedUnpickler(io.BytesIO(raw), source=str(p)).load()
    except DataFormatError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... on corrupt input
        raise DataFormatError(f"{p}: corrupt or truncated pickle ({type(e).__name__}: {e})"
                              ) from None


# ----------------------------------------------------------------------- reading
def _pools_of(obj: Mapping, source) -> dict[str, dict]:
    """``{'level/k/group': pool_dict}`` for every pool of a full RouterEval layout."""
    if "data" in obj and "model" in obj:  # the sample layout: one pool
        return {"all": obj}
    pools = {}
    for level, by_k in obj.items():
        if level in _RESERVED:
            continue
        if not isinstance(by_k, Mapping):
            raise DataFormatError(f"{source}: key '{level}' should map pool sizes to groups, "
                                  f"got {type(by_k).__name__}")
        for k, groups in by_k.items():
            if not isinstance(groups, Mapping):
                raise DataFormatError(f"{source}: ['{level}'][{k!r}] should map group names "
                                      f"to pools, got {type(groups).__name__}")
            for group, pool in groups.items():
                where = f"['{level}'][{k!r}]['{group}']"
                if not isinstance(pool, Mapping) or "data" not in pool or "model" not in pool:
                    raise DataFormatError(f"{source}: {where} needs keys 'data' and 'model'")
                pools[f"{level}/{k}/{group}"] = pool
    if not pools:
        raise DataFormatError(f"{source}: no candidate pools found (keys: {list(obj)[:10]}); "
                              "not a RouterEval router dataset")
    return pools


def routereval_pools(path) -> dict[str, list[str]]:
    """The candidate pools of a RouterEval pickle: ``{'level/k/group': [LLM names]}``.

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(30, 3, seed=0)
    >>> f = write_routereval(rec, tempfile.mkdtemp() + "/x.pkl",
    ...                      split={"train": range(20), "val": range(20, 25),
    ...                             "test": range(25, 30)})
    >>> list(routereval_pools(f))
    ['hard/3/all']
    """
    p = as_path(path, "RouterEval pickle")
    obj = load_pickle_safely(p)
    if not isinstance(obj, Mapping):
        raise DataFormatError(f"{p}: expected a dict at the top level, got {type(obj).__name__}")
    return {k: [str(m) for m in v["model"]] for k, v in _pools_of(obj, p).items()}


def read_routereval(path, pool: str | Sequence | None = None, name: str | None = None
                    ) -> PerformanceRecords:
    """Read a RouterEval router dataset (or the RouterEval-like sample) into records.

    Parameters
    ----------
    path : str or Path
        ``<benchmark>_router_dataset.pkl`` (or ``router_extended_data.pkl``).
    pool : str or (level, k, group), optional
        Keep only this pool's LLMs, e.g. ``"easy/3/all_strong"``; default: all LLMs of
        all pools.
    name : str, optional
        Name of the records (default: the file stem without ``_router_dataset``).

    Returns
    -------
    PerformanceRecords
        Prompt table with ``prompt_id``, ``text``, ``benchmark``, ``category`` and
        ``split`` (train / val / test). Prompt ids are the original positions of
        ``split_index`` (or ``<split>-<i>`` without it).

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(30, 3, seed=0)
    >>> rec.prompts["split"] = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    >>> f = write_routereval(rec, tempfile.mkdtemp() + "/x.pkl")
    >>> read_routereval(f).equals(rec)
    True
    """
    p = as_path(path, "RouterEval pickle")
    obj = load_pickle_safely(p)
    if not isinstance(obj, Mapping):
        raise DataFormatError(f"{p}: expected a dict at the top level, got {type(obj).__name__}")
    pools = _pools_of(obj, p)
    if pool is not None:
        key = "/".join(map(str, pool)) if not isinstance(pool, str) else pool
        if key not in pools:
            raise ConfigError(f"{p}: no pool '{key}'; pools: {sorted(pools)}")
        pools = {key: pools[key]}
    stem = p.stem.replace("_router_dataset", "")
    meta = obj.get(_META_KEY) if isinstance(obj.get(_META_KEY), Mapping) else {}

    # split sizes and prompt texts
    prompt_d = obj.get("prompt") or {}
    first = next(iter(pools.values()))
    sizes = {}
    for s in SPLITS:
        arr = first["data"].get(f"{s}_score") if isinstance(first["data"], Mapping) else None
        if arr is None:
            raise DataFormatError(f"{p}: pool data has no '{s}_score' array")
        sizes[s] = int(np.asarray(arr).shape[0])
    texts, split_col, index = [], [], []
    split_index = obj.get("split_index") or {}
    for s in SPLITS:
        tp = prompt_d.get(f"{s}_prompt")
        if tp is not None:
            tp = [str(t) for t in list(tp)]
            if len(tp) != sizes[s]:
                raise DataFormatError(f"{p}: ['prompt']['{s}_prompt'] has {len(tp)} prompts but "
                                      f"the scores have {sizes[s]} rows")
        texts += tp if tp is not None else [""] * sizes[s]
        split_col += [s] * sizes[s]
        idx = split_index.get(f"{s}_indices")
        if idx is not None:
            idx = np.asarray(idx).ravel()
            if len(idx) != sizes[s]:
                raise DataFormatError(f"{p}: ['split_index']['{s}_indices'] has {len(idx)} "
                                      f"entries but the scores have {sizes[s]} rows")
            index.append(idx.astype(np.int64))
    n = sum(sizes.values())
    if n == 0:
        raise DataFormatError(f"{p}: no prompts in any split")
    if len(index) == len(SPLITS):
        pos = np.concatenate(index)
        if len(np.unique(pos)) != n:
            raise DataFormatError(f"{p}: split_index lists a prompt twice")
        ids = [str(i) for i in pos]
        order = np.argsort(pos, kind="stable")
    else:
        ids = [f"{s}-{i}" for s in SPLITS for i in range(sizes[s])]
        order = np.arange(n)

    # union of the pools' LLMs, each column checked for agreement
    names: list[str] = []
    cols: dict[str, tuple[np.ndarray, np.ndarray | None, str]] = {}
    for key, pl in pools.items():
        data = pl["data"]
        models = [str(m) for m in list(pl["model"])]
        mats, costs = [], []
        for s in SPLITS:
            a = np.asarray(data.get(f"{s}_score"), dtype=np.float64)
            if a.ndim != 2 or a.shape != (sizes[s], len(models)):
                raise DataFormatError(f"{p}: pool '{key}' {s}_score has shape {a.shape}, expected "
                                      f"({sizes[s]}, {len(models)}) (prompts x candidates)")
            mats.append(a)
            c = data.get(f"{s}_cost")
            costs.append(None if c is None else np.asarray(c, dtype=np.float64))
        full = np.concatenate(mats, axis=0)
        fullc = (np.concatenate(costs, axis=0) if all(c is not None for c in costs) else None)
        for j, m in enumerate(models):
            col = full[:, j]
            cc = fullc[:, j] if fullc is not None else None
            if m in cols:
                if not np.array_equal(cols[m][0], col, equal_nan=True):
                    raise DataFormatError(f"{p}: LLM '{m}' has different scores in pools "
                                          f"'{cols[m][2]}' and '{key}'")
            else:
                cols[m] = (col, cc, key)
                names.append(m)
    scores = np.stack([cols[m][0] for m in names], axis=1)[order]
    has_cost = all(cols[m][1] is not None for m in names)
    cost = np.stack([cols[m][1] for m in names], axis=1)[order] if has_cost else None

    if meta.get("prompts") is not None:
        ptab = pd.DataFrame(dict(meta["prompts"]))
        if len(ptab) != n:
            raise DataFormatError(f"{p}: ['{_META_KEY}']['prompts'] has {len(ptab)} rows, the "
                                  f"scores {n}")
    else:
        ptab = pd.DataFrame({"prompt_id": np.asarray(ids, dtype=object)[order],
                             "text": np.asarray(texts, dtype=object)[order],
                             "benchmark": stem, "category": None})
    ptab["split"] = np.asarray(split_col, dtype=object)[order]
    ltab = None
    if meta.get("llms") is not None:
        ltab = pd.DataFrame(dict(meta["llms"]))
        if list(ltab.get("name", [])) != names:
            ltab = ltab.set_index("name").reindex(names).reset_index() \
                if "name" in ltab and set(names) <= set(ltab["name"]) else None
    if ltab is None:
        ltab = pd.DataFrame({"name": names})
    rng = meta.get("score_range")
    return PerformanceRecords(scores.astype(np.float32), ptab, ltab,
                              cost=cost.astype(np.float32) if cost is not None else None,
                              score_range=tuple(rng) if rng else None,
                              name=name or meta.get("name") or stem,
                              score_kind=meta.get("score_kind"),
                              reference_llm=meta.get("reference_llm"))


# ----------------------------------------------------------------------- writing
def _plain_column(values) -> list:
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            v = None
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        elif not isinstance(v, (str, int, float, bool, list, dict)):
            v = str(v)
        out.append(v)
    return out


def _plain_table(df: pd.DataFrame) -> dict:
    return {str(c): _plain_column(df[c].tolist()) for c in df.columns}


def _resolve_split(records: PerformanceRecords, split) -> dict[str, np.ndarray]:
    n = records.n_prompts
    if split is None and "split" in records.prompts.columns:
        col = records.prompts["split"].astype(str).to_numpy()
        bad = ~np.isin(col, SPLITS)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"prompt table, row {row}, column 'split': {col[row]!r} is not "
                                  "train, val or test")
        return {s: np.flatnonzero(col == s) for s in SPLITS}
    if split is None or (isinstance(split, str) and split == "routereval"):
        from ..splits import routereval_split  # RouterEval's seeded 80/10/10 split
        split = routereval_split(records)
    if all(hasattr(split, f"{s}_idx") for s in SPLITS):  # a llmrec.data.splits.Split
        split = {s: np.asarray(getattr(split, f"{s}_idx")) for s in SPLITS}
    if not isinstance(split, Mapping) or set(split) != set(SPLITS):
        raise ConfigError("split must be a dict with keys 'train', 'val', 'test' (positions, "
                          "prompt ids or boolean masks), a llmrec.data.splits.Split, or "
                          "'routereval'")
    out = {s: records._resolve_rows(list(split[s]) if not isinstance(split[s], np.ndarray)
                                    else split[s]) for s in SPLITS}
    allpos = np.concatenate(list(out.values()))
    if len(np.unique(allpos)) != len(allpos):
        raise ConfigError("split: a prompt is in two splits")
    if len(allpos) != n:
        raise ConfigError(f"split covers {len(allpos)} of {n} prompts; every prompt needs a split")
    return out


def _resolve_pools(records: PerformanceRecords, pools) -> dict[tuple, list[str]]:
    if pools is None:
        full = np.bincount(
            records.scores.indices, minlength=records.n_llms) == records.n_prompts
        names = [n for n, ok in zip(records.llm_names, full) if ok]
        if not names:
            raise DataFormatError("no LLM is observed on every prompt, so no dense RouterEval "
                                  "pool can be built; pass pools= with LLMs observed on all "
                                  "prompts, or select prompts first")
        return {("hard", len(names), "all"): names}
    out = {}
    if not isinstance(pools, Mapping) or not pools:
        raise ConfigError("pools must be a non-empty dict {'level/k/group': [LLM names]} or "
                          "{level: {k: {group: [names]}}}")
    for key, val in pools.items():
        if isinstance(val, Mapping):  # nested
            for k, groups in val.items():
                if not isinstance(groups, Mapping):
                    raise ConfigError(f"pools['{key}'][{k!r}] must map group names to LLM lists")
                for g, names in groups.items():
                    out[(str(key), int(k), str(g))] = [str(x) for x in names]
        else:
            parts = key.split("/") if isinstance(key, str) else list(key)
            if len(parts) != 3:
                raise ConfigError(f"pool key {key!r} must be 'level/k/group'")
            out[(str(parts[0]), int(parts[1]), str(parts[2]))] = [str(x) for x in val]
    for key, names in out.items():
        records.llm_index(names)  # UnknownIdError names the unknown LLM
        if not names:
            raise ConfigError(f"pool {'/'.join(map(str, key))} has no LLMs")
    return out


def write_routereval(data, path, *, split=None, pools=None, embeddings=None) -> Path:
    """Export records in RouterEval's ``<benchmark>_router_dataset.pkl`` layout.

    Parameters
    ----------
    data : PerformanceRecords or (train, val, test) sequence of PerformanceRecords
        The records. With one object the split comes from ``split`` or from the
        prompt table's ``split`` column.
    path : str or Path
        Output ``.pkl`` (written atomically).
    split : dict, Split or "routereval", optional
        ``{'train': sel, 'val': sel, 'test': sel}`` (each ``sel`` positions, prompt
        ids or a boolean mask) or a :class:`llmrec.data.splits.Split`. Default: the
        prompt table's ``split`` column if there is one, else RouterEval's seeded
        80/10/10 split (:func:`llmrec.data.splits.routereval_split`).
    pools : dict, optional
        ``{'level/k/group': [LLM names]}`` or RouterEval's nesting
        ``{level: {k: {group: [names]}}}`` (what
        :func:`llmrec.data.pools.routereval_levels` returns). Default: one pool
        ``hard/<k>/all`` of the ``k`` LLMs observed on every prompt. RouterEval arrays
        are dense: every pool LLM needs a score on every prompt.
    embeddings : array, shape (n_prompts, d), optional
        Prompt embeddings (rows in records order), written under ``'embedding'``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(30, 4, seed=0)
    >>> sp = {"train": range(20), "val": range(20, 25), "test": range(25, 30)}
    >>> f = write_routereval(rec, tempfile.mkdtemp() + "/x_router_dataset.pkl", split=sp,
    ...                      pools={"easy/2/all_strong": rec.llm_names[:2]})
    >>> read_routereval(f).shape
    (30, 2)
    """
    if isinstance(data, PerformanceRecords):
        records = data
    elif isinstance(data, Sequence) and len(data) == 3 and all(
            isinstance(d, PerformanceRecords) for d in data):
        if split is not None:
            raise ConfigError("give either (train, val, test) records or split=, not both")
        records = PerformanceRecords.concat(list(data), name=data[0].name)
        sizes = [d.n_prompts for d in data]
        if records.n_prompts != sum(sizes):
            raise DataFormatError("the train, val and test records share prompt ids; each prompt "
                                  "must be in one split")
        b = np.cumsum([0] + sizes)
        split = {s: np.arange(b[i], b[i + 1]) for i, s in enumerate(SPLITS)}
    else:
        raise DataFormatError("write_routereval needs PerformanceRecords or a (train, val, test) "
                              f"sequence of them, got {type(data).__name__}")
    if records.n_prompts == 0:
        raise DataFormatError("write_routereval: the records hold no prompts")
    parts = _resolve_split(records, split)
    pool_map = _resolve_pools(records, pools)
    dense = records.dense()
    cost = records.cost_dense()
    obs = records.observed_dense()
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != records.n_prompts:
            raise DataFormatError(f"embeddings have shape {embeddings.shape}, expected "
                                  f"({records.n_prompts}, d)")

    out: dict = {}
    for (level, k, group), names in pool_map.items():
        cols = records.llm_index(names)
        pd_data = {}
        for s in SPLITS:
            rows = parts[s]
            sub_obs = obs[np.ix_(rows, cols)]
            if not sub_obs.all():
                r, c = np.argwhere(~sub_obs)[0]
                raise DataFormatError(
                    f"pool {level}/{k}/{group}: LLM '{names[c]}' has no score for prompt "
                    f"'{records.prompt_ids[rows[r]]}' ({s}); RouterEval arrays are dense, so "
                    "choose pools of LLMs observed on every prompt")
            pd_data[f"{s}_score"] = dense[np.ix_(rows, cols)].astype(np.float64)
            if cost is not None:
                pd_data[f"{s}_cost"] = cost[np.ix_(rows, cols)].astype(np.float64)
        out.setdefault(level, {}).setdefault(k, {})[group] = {"data": pd_data,
                                                              "model": list(names)}
    texts = np.asarray(records.texts, dtype=object)
    out["split_index"] = {f"{s}_indices": parts[s].astype(np.int64) for s in SPLITS}
    out["prompt"] = {f"{s}_prompt": list(texts[parts[s]]) for s in SPLITS}
    if embeddings is not None:
        out["embedding"] = {f"{s}_embed": embeddings[parts[s]] for s in SPLITS}
    ptab = records.prompts
    out[_META_KEY] = {"format_version": 1, "name": records.name,
                      "score_range": list(records.score_range) if records.score_range else None,
                      "score_kind": records.score_kind, "reference_llm": records.reference_llm,
                      "prompts": _plain_table(ptab), "llms": _plain_table(records.llms)}

    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(out, fh, protocol=4)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
