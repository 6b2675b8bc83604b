"""llmrec's routers against RouterEval's own baselines, pool by pool, in both modes.

Regenerates the section of ``benchmarks/RESULTS.md`` between the markers
``<!-- routereval-compare:start -->`` and ``<!-- routereval-compare:end -->``:

* ``llmrec`` mode (training-only pools, no test-time masking, tie rule by training
  mean) over ``--seeds`` seeds: mean and standard deviation of mu per router and
  (m, group); for each comparison pair the mean difference over seeds and the number
  of (pool, seed) cells where a paired bootstrap over test prompts (2,000 resamples,
  95 %) finds it significant, in favour of either side.
* ``routereval-exact`` mode (one split by definition): mu per router and pool, and
  the paired bootstrap of each pair per pool, with the count of significant pools.

Pairs compare each RouterEval baseline with llmrec's router of the same idea
(``knn`` with k tuned on validation prompts vs ``re-prknn``, ``linear`` vs
``re-linear``, ``cluster`` vs ``re-cluster``, ``mlp`` vs ``re-mlp``), chosen before
looking at any result.

Usage::

    nice -n 10 python benchmarks/routereval_compare.py --seeds 0,1,2,3,4 \
        --sizes 3,5,10,29 --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
import warnings
from pathlib import Path

from _results import replace_section  # benchmarks/ is this script's folder

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmrec.datasets import load  # noqa: E402
from llmrec.evaluation.bench import markdown_table  # noqa: E402
from llmrec.evaluation.metrics import paired_bootstrap_diff  # noqa: E402
from llmrec.evaluation.protocols import routereval_protocol  # noqa: E402

ROUTERS = [
    ("knn", "knn", {"k_grid": [5, 25, 50]}),
    ("linear", "linear", {"alpha_grid": [1.0, 10.0, 100.0]}),
    ("cluster", "cluster", {"n_clusters": 8, "n_init": 2}),
    ("mlp", "mlp", {}),
    ("re-prknn", "re-prknn", {}),
    ("re-linear", "re-linear", {}),
    ("re-cluster", "re-cluster", {}),
    ("re-mlp", "re-mlp", {}),
    ("best-single", "best-single", {}),
    ("oracle", "oracle", {}),
    ("random", "random", {}),
]
PAIRS = [("knn", "re-prknn"), ("linear", "re-linear"), ("cluster", "re-cluster"),
         ("mlp", "re-mlp")]
START, END = "<!-- routereval-compare:start -->", "<!-- routereval-compare:end -->"


def _pairs_table(per_prompt: dict, pools: list, seeds: list, n_boot: int) -> pd.DataFrame:
    rows = []
    for a, b in PAIRS:
        for m, group in pools:
            diffs, up, down, n = [], 0, 0, 0
            for s in seeds:
                pa, pb = per_prompt.get((s, a, m, group)), per_prompt.get((s, b, m, group))
                if pa is None or pb is None:
                    continue
                r = paired_bootstrap_diff(pa, pb, n_boot=n_boot, seed=s)
                diffs.append(r["diff"])
                n += 1
                up += r["significant"] and r["diff"] > 0
                down += r["significant"] and r["diff"] < 0
            if not diffs:
                continue
            rows.append({"pair": f"{a} - {b}", "m": m, "group": group,
                         "mean diff": float(np.mean(diffs)),
                         "sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else np.nan,
                         "llmrec better (sig.)": int(up), f"{b} better (sig.)": int(down),
                         "not sig.": int(n - up - down)})
    t = pd.DataFrame(rows)
    if t.empty:
        return t
    cols = [c for c in t.columns if c.endswith("better (sig.)") and not c.startswith("llmrec")]
    t["RouterEval better (sig.)"] = t[cols].fillna(0).sum(axis=1).astype(int)
    return t.drop(columns=cols)


def _summary(t: pd.DataFrame) -> str:
    out = []
    for pair, g in t.groupby("pair", sort=False):
        out.append(f"- `{pair}`: {int(g['llmrec better (sig.)'].sum())} significant in llmrec's "
                   f"favour, {int(g['RouterEval better (sig.)'].sum())} in RouterEval's, "
                   f"{int(g['not sig.'].sum())} not significant (of {int(g[['llmrec better (sig.)', 'RouterEval better (sig.)', 'not sig.']].to_numpy().sum())} pool x seed cells).")  # noqa: E501
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mmlu-pro")
    ap.add_argument("--data-dir", default=os.environ.get("LLMREC_SHARED_DATA",
                                                        str(REPO.parent / "shared" / "data")))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--sizes", default="3,5,10,29")
    ap.add_argument("--encoder", default="tfidf64",
                    help="an encoder name, or tfidf64: TfidfEncoder(dim=64, n_features=2**16), "
                         "the encoder of the exact-mode reference figures")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--write", default=None, help="RESULTS.md to update between the markers")
    ap.add_argument("--cache", default=None,
                    help="folder: each seed's (and the exact mode's) results are saved there "
                         "and reused, so seeds can run as parallel processes")
    ap.add_argument("--how", default="",
                    help="a note on how the run was done, printed beside the wall time")
    ap.add_argument("--skip-exact", action="store_true", help="only the llmrec-mode seeds")
    ap.add_argument("--only-exact", action="store_true", help="only the exact mode")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rec = load(args.data, data_dir=args.data_dir)
    encoder = args.encoder
    if encoder == "tfidf64":
        from llmrec.encoders import TfidfEncoder
        encoder = TfidfEncoder(dim=64, n_features=2 ** 16, random_state=0)
    t0 = time.time()

    import pickle
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)

    def cached(key, fn):
        f = cache / f"{key}_{args.data}_{args.encoder}_{args.sizes.replace(',', '-')}.pkl" \
            if cache else None
        if f is not None and f.is_file():
            with open(f, "rb") as fh:
                return pickle.load(fh)
        out = fn()
        if f is not None:
            with open(f, "wb") as fh:
                pickle.dump(out, fh)
        return out

    def run_seed(s):
        res = routereval_protocol(rec, ROUTERS, sizes=sizes, encoder=encoder, seed=s,
                                  n_boot=0, mode="llmrec")
        return res.tidy, res.details["per_prompt"], time.time() - t0

    def run_exact():
        res = routereval_protocol(rec, ROUTERS, sizes=sizes, encoder=encoder,
                                  mode="routereval-exact")
        return res.tidy, res.details["per_prompt"], time.time() - t0

    if args.only_exact:
        cached("exact", run_exact)
        print(f"exact mode done ({time.time() - t0:.0f} s)")
        return 0
    # ---- llmrec mode, several seeds
    tidy, per_prompt, run_secs = [], {}, []
    for s in seeds:
        t_s, pp, secs_s = cached(f"llmrec_seed{s}", lambda: run_seed(s))
        run_secs.append(secs_s)
        tidy.append(t_s.assign(seed=s))
        for (label, m, group), v in pp.items():
            per_prompt[(s, label, m, group)] = v
        print(f"llmrec mode seed {s} done ({time.time() - t0:.0f} s)", flush=True)
    if args.skip_exact:
        return 0
    tl = pd.concat(tidy, ignore_index=True)
    pools = list(dict.fromkeys(zip(tl["m"], tl["group"])))
    order = [r[0] for r in ROUTERS]
    mu = tl.groupby(["router", "m", "group"])["mu"].agg(["mean", "std"])
    wide = pd.DataFrame({f"{m} {g}": [f"{mu.loc[(r, m, g), 'mean']:.4f} ± "
                                      f"{mu.loc[(r, m, g), 'std']:.4f}"
                                      if (r, m, g) in mu.index else "" for r in order]
                         for m, g in pools}, index=order)
    wide.index.name = "router"
    pairs_l = _pairs_table(per_prompt, pools, seeds, args.n_boot)
    n_eval = tl.groupby(["m", "group"])["n_eval"].agg(["min", "max"])

    # ---- exact mode, one split
    te, ex_pp, secs_e = cached("exact", run_exact)
    run_secs.append(secs_e)
    pools_e = list(dict.fromkeys(zip(te["m"], te["group"])))
    mu_e = te.set_index(["router", "m", "group"])["mu"]
    wide_e = pd.DataFrame({f"{m} {g}": [mu_e.get((r, m, g), np.nan) for r in order]
                           for m, g in pools_e}, index=order)
    wide_e.index.name = "router"
    pe = {(0, k[0], k[1], k[2]): v for k, v in ex_pp.items()}
    pairs_e = _pairs_table(pe, pools_e, [0], args.n_boot)
    secs = max(run_secs)  # with --cache the runs may have been parallel processes

    cmd = ("python benchmarks/routereval_compare.py --seeds " + args.seeds +
           " --sizes " + args.sizes + f" --encoder {args.encoder} --write benchmarks/RESULTS.md")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = "\n".join([
        START, "",
        "## RouterEval: llmrec's routers vs RouterEval's baselines (`routereval_compare.py`)",
        "",
        f"Command: `{cmd}`; {args.data} ({rec.n_prompts} prompts x {rec.n_llms} LLMs); "
        f"encoder {args.encoder} (TF-IDF, 64 dimensions: the encoder of the exact-mode "
        f"reference figures); pool sizes {args.sizes}; {secs:.0f} s wall"
        f"{' (' + args.how + ')' if args.how else ''}; {when}; machine: "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "RouterEval's baselines (`re-*`) are llmrec's reimplementations of its scripts, "
        "checked against figures produced by its own code "
        "(`tests/test_routereval_exact.py`, within 0.002; MLPR with "
        "`LLMREC_SLOW_TESTS=1`). In `llmrec` mode every router trains on the LLMs in "
        "name order (`Router.canonical_llm_order`), so no figure depends on the column "
        "order; the exact mode keeps RouterEval's weakest-first order and its first-"
        "column ties.",
        "",
        "Pairs were fixed before any run: each RouterEval baseline against llmrec's router "
        "of the same idea. Significance: paired bootstrap over the test prompts of one "
        f"pool ({args.n_boot} resamples, 95 % interval excluding 0). Where m is every LLM "
        "(29 on MMLU-Pro) the three groups are one pool, fitted once and counted three "
        "times in the counts below.",
        "",
        f"### Mode `llmrec` (seeds {args.seeds})",
        "",
        "Pools chosen on each seed's training prompts (so they can differ between seeds); "
        "no test-time masking: prompts with an unobserved cell in the pool are left out "
        "for every router alike (evaluated test prompts per pool: "
        f"{int(n_eval['min'].min())}-{int(n_eval['max'].max())} of "
        f"{int(tl['n_test'].max())}); ties go to the higher training mean.",
        "",
        "mu, mean ± sd over seeds:",
        "",
        markdown_table(wide),
        "",
        "Differences of mu (llmrec router - RouterEval baseline), mean over seeds, and the "
        "number of seeds where the pool's paired bootstrap is significant:",
        "",
        markdown_table(pairs_l, index=False),
        "",
        _summary(pairs_l),
        "",
        "### Mode `routereval-exact` (RouterEval's split, pools, 0 for missing cells, "
        "first-column ties)",
        "",
        "mu per pool (one split by definition):",
        "",
        markdown_table(wide_e),
        "",
        "Paired bootstrap per pool (1 = significant in that direction):",
        "",
        markdown_table(pairs_e, index=False),
        "",
        _summary(pairs_e),
        "", END])
    print(md)
    if args.write:
        p = Path(args.write)
        replace_section(p, START, END, md)
        print("updated", p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
