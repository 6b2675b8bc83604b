"""Headline quality tables: mean +- std over seeds, paired test pooled over seeds.

One command per target table (issue 12):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_quality.py --data mmlu-pro
    ... --data routerdc | llmrouter | routerbench | routellm-mmlu | synthetic-preference

Protocol (the API path a user runs): for each seed, a cold-prompt split of the
records, 80/10/10 by prompt (stratified by benchmark, seeded, so every seed is a
different split); every router is fitted on the training prompts with the
validation prompts as ``val_records`` (only routers with a validation grid or early
stopping read them; ``auto`` tunes on the training prompts and the validation
prompts), and routes each test prompt through ``recommend_ids`` (top-1);
``auto (cv)`` is ``auto`` as ``llmrec fit`` runs it without ``--val``: fitted on
the training and validation prompts together, its guard tuned by cross-validated
stacking over all of them (the same labelled prompts every other router sees). The
encoder is fitted on the training prompts of the seed (TF-IDF) or is MiniLM from the
shared cache (``--encoder minilm``; when a prompt of the dataset is missing from the
cache it stops, unless ``--encode`` asks it to encode the missing prompts first).

Figures per router: Vb (mu / best single LLM's test mean) as mean +- std over seeds;
the paired permutation test "router beats best-single", pooled over the test
prompts of all seeds (one-sided p); fit+score seconds. With costs: AIQ and the
iso-quality cost (cheapest point of the cost-aware curve that matches the best
single LLM, as a fraction of its cost). With two LLMs: APGR.

Results go to ``benchmarks/quality/<data>.json`` and the table to
``benchmarks/RESULTS.md`` between ``<!-- bench_quality:<data> -->`` markers.

A change that touches a few routers re-runs their rows only:
``--routers als,bpr --update`` fits those routers (and best-single, which must match
the saved table: same seeds, same splits) and replaces their rows in the saved JSON
and table, which then says which rows were re-run, when and with what command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmrec.data.records import PerformanceRecords  # noqa: E402
from llmrec.data.splits import cold_prompt_split  # noqa: E402
from llmrec.evaluation import metrics as M  # noqa: E402
from llmrec.evaluation.protocols import shared_encoder  # noqa: E402
from llmrec.routers import llm_costs, make_router  # noqa: E402
from llmrec.routers.tuning import tune_router  # noqa: E402

# label -> (registry name, params); grids are searched on validation prompts only
ROUTERS = {
    "best-single": ("best-single", {}),
    "best-per-group": ("best-per-group", {}),  # column set per dataset below
    "knn (k=5)": ("knn", {"k": 5}),
    "knn (tuned k)": ("knn", {"k_grid": [5, 10, 20, 50, 100, 200]}),
    "linear (tuned)": ("linear", {"alpha_grid": [0.1, 1.0, 10.0, 100.0, 1000.0]}),
    "mlc": ("mlc", {"C_grid": [0.1, 1.0]}),
    "als": ("als", {}),
    "bpr": ("bpr", {}),
    "lightfm": ("lightfm", {"epochs": 5}),
    # the neural CF routers (early stopping on the validation prompts); ask with --routers
    "textmf": ("textmf", {}),
    "twotower": ("twotower", {}),
    "auto": ("auto", {}),
    # auto as `llmrec fit` runs it without --val: fitted on the training and validation
    # prompts together, its guard tuned by cross-validated stacking on all of them
    "auto (cv)": ("auto", {}),
    "oracle": ("oracle", {}),
    # the CF routers tuned as the classifier rows are: their DEFAULT_GRIDS searched on
    # the validation prompts (llmrec.routers.tuning.tune_router, what `llmrec fit --tune
    # --val` runs); ask with --routers
    "als (tuned)": ("als", {}),
    "bpr (tuned)": ("bpr", {}),
    "textmf (tuned)": ("textmf", {}),
    "twotower (tuned)": ("twotower", {}),
}
#: fitted by tune_router over the router's default grid, on the validation prompts
TUNED = {"als (tuned)", "bpr (tuned)", "textmf (tuned)", "twotower (tuned)"}
# lightfm, textmf and twotower are left out of the default run: with dense features
# they are the slowest by far on the shared box (ask for them with --routers, e.g.
# --routers lightfm,textmf,twotower --update to add their rows to a saved table)
DEFAULT_ROUTERS = [r for r in ROUTERS if r not in ("lightfm", "textmf", "twotower")
                   and r not in TUNED]
#: fitted on train + val without val_records (the router tunes on its own folds)
NO_VAL = {"auto (cv)"}
DATASETS = ("mmlu-pro", "routerdc", "llmrouter", "routerbench", "routellm-mmlu",
            "synthetic-preference")


def load(name: str):
    if name == "synthetic-preference":
        from llmrec.datasets import make_synthetic
        return make_synthetic(6000, 12, n_topics=10, seed=0, kind="preference")
    from llmrec.datasets import load as _load
    return _load(name)


def group_column(rec) -> str | None:
    for col in ("category", "benchmark"):
        v = rec.prompts[col].dropna().astype(str)
        v = v[v != ""]
        if 2 <= v.nunique() <= 200:
            return col
    return None


def minilm_if_cached(rec, encode: bool = False):
    """A cached MiniLM encoder when every prompt text of ``rec`` is in the shared cache
    (with ``encode``, the missing texts are encoded into it first)."""
    from llmrec.encoders import make_encoder
    from llmrec.encoders.cache import CachedEncoder, default_cache_dir
    cache = default_cache_dir()
    enc = CachedEncoder(make_encoder("minilm"), cache)
    from llmrec.encoders.cache import text_key
    texts = list(dict.fromkeys(rec.texts))
    found, _ = enc.cache_.get(enc.fingerprint, [text_key(t) for t in texts])
    n_have = int(found.sum())
    if n_have < len(texts):
        if not encode:
            raise SystemExit(f"MiniLM cache holds {n_have} of {len(texts)} prompts of this "
                             "dataset; pass --encode to encode them now (about 40 prompts/s "
                             "on 2 cores), or use --encoder tfidf")
        print(f"MiniLM cache holds {n_have} of {len(texts)} prompts; encoding the rest into "
              f"{cache} (about 40 prompts/s on 2 cores)", flush=True)
        enc.encode(texts, show_progress=True)
    return enc


def encoder_spec(rec, encoder: str, encode: bool = False):
    """What ``shared_encoder`` gets for ``--encoder`` tfidf / minilm / union (the
    fine-tuned ones are made per seed)."""
    if encoder == "minilm":
        return minilm_if_cached(rec, encode)
    if encoder == "union":  # cached MiniLM + TF-IDF (SVD) + text statistics
        from llmrec.encoders import UnionEncoder
        return UnionEncoder(parts=[minilm_if_cached(rec, encode), "tfidf"])
    return "tfidf"


def finetuned(data: str, split, seed: int, ft_seconds: float, ft_epochs: float):
    """MiniLM fine-tuned on this seed's training prompts only (issue 12, item 5), through
    the embedding cache. The folder is kept per (data, seed, budget) and reused, so the
    minilm-ft and union-ft runs of one seed share one fine-tune."""
    from llmrec.encoders.cache import CachedEncoder, cache_root
    from llmrec.encoders.finetune import FINETUNE_INFO, finetune_sentence_encoder
    from llmrec.encoders.sentence import SentenceTransformerEncoder
    root = cache_root()
    out = root / "finetuned" / f"{data}-seed{seed}-{int(ft_seconds)}s-{ft_epochs:g}ep"
    if (out / FINETUNE_INFO).is_file():
        enc = SentenceTransformerEncoder(model=str(out))
        enc.finetune_info_ = json.loads((out / FINETUNE_INFO).read_text())
    else:
        enc = finetune_sentence_encoder(split.train, out, max_seconds=ft_seconds,
                                        epochs=ft_epochs, seed=seed, show_progress=True)
    info = enc.finetune_info_
    print(f"fine-tuned MiniLM for seed {seed}: {info['steps']} steps, "
          f"{info['prompts_seen']} prompts ({info['epochs_done']:.2f} epochs) in "
          f"{info['seconds']:.0f} s, loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}",
          flush=True)
    cached = CachedEncoder(enc, root / "emb")
    return cached, {k: info[k] for k in ("steps", "prompts_seen", "epochs_done", "seconds",
                                          "stopped_by", "loss_first", "loss_last")}


def run(data: str, routers: list[str], seeds: list[int], encoder: str,
        encode: bool = False, ft_seconds: float = 600.0, ft_epochs: float = 1.0) -> dict:
    rec = load(data)
    col = group_column(rec)
    enc_spec = None if encoder.endswith("-ft") else encoder_spec(rec, encoder, encode)
    per = {r: {"vb": [], "mu": [], "diff": [], "secs": [], "aiq": [], "iso": [], "apgr": [],
               "picks_ref": []} for r in routers}
    meta = {"data": data, "n_prompts": rec.n_prompts, "n_llms": rec.n_llms,
            "score_kind": rec.score_kind, "group_column": col, "encoder": encoder,
            "seeds": seeds, "auto_tuning": []}
    if encoder.endswith("-ft"):
        meta["finetune"] = []
    for seed in seeds:
        split = cold_prompt_split(rec, val=0.1, test=0.1, seed=seed, stratify="benchmark")
        t0 = time.perf_counter()
        if encoder.endswith("-ft"):
            ft, ft_info = finetuned(data, split, seed, ft_seconds, ft_epochs)
            meta["finetune"].append(ft_info)
            if encoder == "minilm-ft":
                enc_spec = ft
            else:
                from llmrec.encoders import UnionEncoder
                enc_spec = UnionEncoder(parts=[ft, "tfidf"])
        enc = shared_encoder(rec, split.train, enc_spec)
        enc_secs = time.perf_counter() - t0
        truth = split.test.dense().astype(np.float64)
        best_means = np.nanmean(truth, axis=0)
        best_single_mu = float(np.nanmax(best_means))
        rows = np.arange(truth.shape[0])
        base = None
        costs = llm_costs(split.train)
        train_val = PerformanceRecords.concat([split.train, split.val]) \
            if NO_VAL & set(routers) else None
        for label in routers:
            name, params = ROUTERS[label]
            if name == "best-per-group":
                if col is None:
                    continue
                params = {"column": col}
            t1 = time.perf_counter()
            r = make_router(name, **params)
            for p in ("random_state",):
                if p in r._param_names():
                    r.set_params(**{p: seed})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if label in NO_VAL:
                    r.fit(train_val, encoder=enc if r.needs_text else None,
                          show_progress=False)
                elif label in TUNED:
                    r = tune_router(name, split.train, encoder=enc, val_records=split.val,
                                    params={**params, **({"random_state": seed}
                                            if "random_state" in r._param_names() else {})},
                                    show_progress=False)
                    meta.setdefault("tuned_chosen", {}).setdefault(label, []).append(
                        r.tuning_["chosen"])
                else:
                    r.fit(split.train, encoder=enc if r.needs_text else None,
                          val_records=split.val, show_progress=False)
                ids, _ = r.recommend_ids(split.test, k=1)
                S = r.score(split.test) if (costs is not None or truth.shape[1] == 2) else None
            secs = time.perf_counter() - t1
            picks = ids[:, 0]
            got = truth[rows, picks]
            mu = float(np.nanmean(got))
            d = per[label]
            d["mu"].append(mu)
            d["vb"].append(mu / best_single_mu)
            d["secs"].append(secs)
            if label == "best-single":
                base = got
            d["diff"].append(got)
            if name == "auto":
                meta.setdefault("auto_tuning" if label == "auto" else "auto_cv_tuning",
                                []).append({k: v for k, v in r.tuning_.items()
                                            if k not in ("full", "text")}
                                           | {v: {"margin": r.tuning_[v]["margin"]}
                                              for v in ("full", "text") if v in r.tuning_})
            if costs is not None and name != "oracle":
                # the router's own cost trade, as a user gets it: recommend(cost_weight=w)
                # with w = lambda / the largest LLM cost (the metric's lambda scale)
                def picks(lam, r=r):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        return r.recommend_ids(split.test, k=1,
                                               cost_weight=lam / float(costs.max()))[0][:, 0]
                curve = M.quality_cost_curve(truth, costs, picks_fn=picks)
                d["aiq"].append(M.aiq(curve.cost, curve.quality,
                                      cost_range=(float(costs.min()), float(costs.max()))))
                d["iso"].append(M.iso_quality_cost(truth, costs, picks_fn=picks)["fraction"])
            if truth.shape[1] == 2 and name != "oracle":
                strong = int(np.argmax(np.nanmean(split.train.dense(), axis=0)))
                weak = 1 - strong
                pref = S[:, strong] - S[:, weak]
                d["apgr"].append(M.apgr(pref, truth[:, strong], truth[:, weak])["apgr"])
            print(f"[{data} seed {seed}] {label}: Vb {mu / best_single_mu:.4f} ({secs:.0f} s)",
                  flush=True)
        meta.setdefault("encode_seconds", []).append(enc_secs)
        # paired differences against best-single on this seed's test prompts
        for label in routers:
            if per[label]["diff"] and isinstance(per[label]["diff"][-1], np.ndarray):
                per[label]["diff"][-1] = per[label]["diff"][-1] - base
    table = {}
    for label in routers:
        d = per[label]
        if not d["vb"]:
            continue
        diffs = np.concatenate(d["diff"])
        row = {"vb_mean": float(np.mean(d["vb"])), "vb_std": float(np.std(d["vb"], ddof=1))
               if len(d["vb"]) > 1 else 0.0, "vb": d["vb"], "mu_mean": float(np.mean(d["mu"])),
               "secs_mean": float(np.mean(d["secs"]))}
        if label != "best-single":
            t = M.paired_test(diffs, np.zeros_like(diffs), n_resamples=5000, seed=0)
            row["p_vs_best_single"] = float(t["p_value"])
            row["mean_diff"] = float(t["mean_diff"])
        for k in ("aiq", "iso", "apgr"):
            if d[k]:
                row[k + "_mean"] = float(np.nanmean(d[k]))
                row[k + "_std"] = float(np.nanstd(d[k], ddof=1)) if len(d[k]) > 1 else 0.0
        table[label] = row
    return {"meta": meta, "table": table}


def markdown(res: dict, cmd: str, secs: float) -> str:
    m, t = res["meta"], res["table"]
    cols = ["router", "Vb mean ± std", "p vs best-single (pooled)", "fit+score s"]
    extra = [k for k in ("aiq", "iso", "apgr") if any(k + "_mean" in r for r in t.values())]
    names = {"aiq": "AIQ", "iso": "iso-quality cost (× best single)", "apgr": "APGR"}
    cols += [names[k] for k in extra]
    lines = [f"### {m['data']} ({m['n_prompts']:,} prompts x {m['n_llms']} LLMs, "
             f"{m['score_kind']} scores)", "",
             f"Command: `{cmd}`; encoder {m['encoder']}; seeds {m['seeds']} (a different "
             f"80/10/10 cold-prompt split each); best-per-group by `{m['group_column']}`; "
             f"{secs / 60:.0f} min on a 2-core shared box, other jobs running; "
             f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for label, r in t.items():
        p = r.get("p_vs_best_single")
        cells = [label, f"{r['vb_mean']:.4f} ± {r['vb_std']:.4f}",
                 "" if p is None else f"{p:.4f}", f"{r['secs_mean']:.0f}"]
        for k in extra:
            cells.append(f"{r[k + '_mean']:.3f} ± {r[k + '_std']:.3f}" if k + "_mean" in r
                         else "")
        lines.append("| " + " | ".join(cells) + " |")
    ft = m.get("finetune")
    if ft:
        lines += ["", "MiniLM fine-tuned per seed on that seed's training prompts only "
                      "(`llmrec.encoders.finetune`, last 2 layers, sample-LLM contrastive "
                      "loss): " + "; ".join(
                          f"seed {s}: {f['epochs_done']:.2f} epochs in {f['seconds']:.0f} s, "
                          f"loss {f['loss_first']:.3f} -> {f['loss_last']:.3f}"
                          for s, f in zip(m["seeds"], ft)) + "."]
    for key, label in (("auto_tuning", "auto"), ("auto_cv_tuning", "auto (cv)")):
        routes = [(a.get("full", {}) or {}).get("margin") is not None
                  for a in m.get(key, [])]
        if routes:
            lines += ["", f"`{label}` moved off the best single LLM (guard passed) on "
                          f"{sum(routes)} of {len(routes)} seeds."]
    return "\n".join(lines)


def merge_rows(old: dict, new: dict, cmd: str) -> dict:
    """The saved table with the rows of ``new`` (a partial re-run on the same seeds,
    encoder and therefore splits) put in place of the old ones; best-single must come
    out identical, which checks that the splits are the same."""
    om, nm = old["meta"], new["meta"]
    for key in ("data", "encoder", "seeds"):
        if om.get(key) != nm.get(key):
            raise SystemExit(f"--update: the saved table has {key}={om.get(key)!r}, this run "
                             f"{nm.get(key)!r}; re-run the whole table instead")
    if not np.allclose(old["table"]["best-single"]["mu_mean"],
                       new["table"]["best-single"]["mu_mean"]):
        raise SystemExit("--update: best-single differs from the saved table, so the splits "
                         "differ; re-run the whole table instead")
    table = dict(old["table"])
    tail = {k: table.pop(k) for k in ("oracle",) if k in table}
    for label, row in new["table"].items():
        table[label] = row
    table.update(tail)
    meta = dict(om)
    for key in ("auto_tuning", "auto_cv_tuning"):
        if nm.get(key):  # auto re-run (the run's meta always holds an empty list)
            meta[key] = nm[key]
    if nm.get("tuned_chosen"):  # the values tune_router chose, per re-run tuned row
        meta["tuned_chosen"] = {**om.get("tuned_chosen", {}), **nm["tuned_chosen"]}
    rerun = [k for k in new["table"] if k != "best-single"]
    meta["updates"] = list(om.get("updates", [])) + [{
        "rows": rerun, "cmd": cmd,
        "utc": f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}"}]
    return {"meta": meta, "table": table}


def keep_command_line(tag: str, md: str, res: dict) -> str:
    """A merged table keeps the command line of the run that made it and says which
    rows were re-run since, with what."""
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    m = re.search(rf"<!-- bench_quality:{re.escape(tag)} -->.*?(Command: [^\n]*)", text, re.S)
    lines = md.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("Command: "))
    if m:
        lines[i] = m.group(1)
    notes = [f"Rows {', '.join(u['rows'])} re-run {u['utc']} UTC with `{u['cmd']}` (same "
             "seeds and splits; best-single identical)." for u in res["meta"]["updates"]]
    return "\n".join(lines[:i + 1] + [""] + notes + lines[i + 1:])


def write_results(data: str, md: str) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    head = ("<!-- bench_quality -->\n## Headline quality, mean ± std over seeds "
            "(`bench_quality.py`, issue 12)\n\nVb = mu / the best single LLM's test mean "
            "(the best single LLM of the test split: a slightly optimistic baseline). p: "
            "one-sided paired permutation test of \"router beats best-single\" on the test "
            "prompts of all seeds pooled.\n<!-- /bench_quality -->")
    if "<!-- bench_quality -->" not in text:
        text = text.rstrip() + "\n\n" + head + "\n"
    block = f"<!-- bench_quality:{data} -->\n{md}\n<!-- /bench_quality:{data} -->"
    pat = re.compile(rf"<!-- bench_quality:{re.escape(data)} -->.*?"
                     rf"<!-- /bench_quality:{re.escape(data)} -->", re.S)
    if pat.search(text):
        text = pat.sub(lambda _: block, text)
    else:
        text = text.replace("<!-- /bench_quality -->", block + "\n<!-- /bench_quality -->")
    path.write_text(text)
    scripts = str(Path(__file__).resolve().parent)  # benchmarks/, where targets_table is
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import targets_table  # the issue-12 target table is rebuilt from the saved tables
    targets_table.write(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, choices=DATASETS)
    ap.add_argument("--routers", default=",".join(DEFAULT_ROUTERS))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--encoder", default="tfidf",
                    choices=("tfidf", "minilm", "union", "minilm-ft", "union-ft"),
                    help="minilm-ft / union-ft: MiniLM fine-tuned per seed on the training "
                         "prompts (llmrec.encoders.finetune), alone or in the union")
    ap.add_argument("--ft-seconds", type=float, default=600.0,
                    help="fine-tuning budget per seed (seconds)")
    ap.add_argument("--ft-epochs", type=float, default=1.0,
                    help="fine-tuning passes over the training prompts, within the budget")
    ap.add_argument("--encode", action="store_true",
                    help="with --encoder minilm/union: encode prompts missing from the "
                         "MiniLM cache ($LLMREC_CACHE/emb) instead of stopping")
    ap.add_argument("--no-write", action="store_true",
                    help="do not touch RESULTS.md or the saved table (benchmarks/quality)")
    ap.add_argument("--update", action="store_true",
                    help="re-run only --routers (and best-single) on the same seeds and "
                         "encoder as the saved table and replace those rows, keeping the "
                         "others; the table says which rows were re-run and when")
    args = ap.parse_args(argv)
    routers = [r for r in args.routers.split(",") if r]
    unknown = [r for r in routers if r not in ROUTERS]
    if unknown:
        raise SystemExit(f"unknown router label(s) {unknown}; known: {list(ROUTERS)}")
    if "best-single" not in routers:
        routers = ["best-single"] + routers
    seeds = [int(s) for s in args.seeds.split(",")]
    out = HERE / "quality"
    out.mkdir(exist_ok=True)
    tag = args.data if args.encoder == "tfidf" else f"{args.data}-{args.encoder}"
    saved = out / f"{tag}.json"
    if args.update and not saved.is_file():  # before minutes of fitting, not after
        raise SystemExit(f"--update: no saved table {saved}; run the whole table first "
                         "(without --update)")
    t0 = time.perf_counter()
    res = run(args.data, routers, seeds, args.encoder, args.encode, args.ft_seconds,
              args.ft_epochs)
    secs = time.perf_counter() - t0
    cmd = "python benchmarks/bench_quality.py " + shlex.join(argv if argv is not None
                                                             else sys.argv[1:])
    if args.update:
        res = merge_rows(json.loads(saved.read_text()), res, cmd.strip())
    md = markdown(res, cmd.strip(), secs)
    if args.update:
        md = keep_command_line(tag, md, res)
    print(md)
    if not args.no_write:  # --no-write leaves both the saved table and RESULTS.md alone
        saved.write_text(json.dumps(res, indent=1, default=float))
        write_results(tag, md)


if __name__ == "__main__":
    main()
