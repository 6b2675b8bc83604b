"""Run RouterEval's OWN scripts on MMLU-Pro and store their per-pool figures.

This produces ``tests/data/routereval_reference/mmlu_pro.json``, the figures that
``tests/test_routereval_exact.py`` holds llmrec's ``routereval-exact`` mode to.
Nothing of RouterEval is copied into llmrec: this script takes a checkout of
MilkThink-Lab/RouterEval (``--routereval DIR``), copies it to a scratch folder,
writes MMLU-Pro in the layout its ``get_router_dataset.py`` reads, applies the few
textual edits listed in ``EDITS`` (which benchmark, which embedding, which pool
sizes, save the result) and runs its scripts as subprocesses, exactly as its
``test_router.py`` does, parsing the three numbers each prints.

Usage (a RouterEval checkout at /tmp/RouterEval)::

    nice -n 10 python benchmarks/routereval_reference.py --routereval /tmp/RouterEval \
        --data-dir ../shared/data --out tests/data/routereval_reference/mmlu_pro.json

See ``tests/data/routereval_reference/README.md`` for what each figure is.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: pool sizes run (RouterEval's 100 and 1000 exceed MMLU-Pro's 29 LLMs: its
#: select_candidates returns no pool there and its script stops)
SIZES = (3, 5, 10, 29)
#: (old, new) textual edits of get_router_dataset.py's __main__ block
EDITS = [
    ("to_handle_scenario = 'gsm8k'", "to_handle_scenario = 'mmlu_pro'"),
    ("embed_model = 'RoBERTa'", "embed_model = 'tfidf'"),
    ("            100: {'all_strong': {'data': None, 'model': None}, 'all_weak': {'data': None, "
     "'model': None}, 'strong_to_weak': {'data': None, 'model': None}},\n"
     "            1000: {'all_strong': {'data': None, 'model': None}, 'all_weak': {'data': None, "
     "'model': None}, 'strong_to_weak': {'data': None, 'model': None}}\n",
     "            29: {'all_strong': {'data': None, 'model': None}, 'all_weak': {'data': None, "
     "'model': None}, 'strong_to_weak': {'data': None, 'model': None}},\n"),
    ("    print(convert_arrays_to_shapes(router_dataset))",
     "    print(convert_arrays_to_shapes(router_dataset))\n"
     "    import os; os.makedirs('data/router_dataset', exist_ok=True)\n"
     "    with open('data/router_dataset/mmlu_pro_router_dataset.pkl', 'wb') as f:\n"
     "        pickle.dump(router_dataset, f)"),
]
#: the baselines and the command lines of RouterEval's test_router.py (kNN, cluster,
#: r_o) and of router/MLPR_LinearR/script.txt (LinearR, MLPR; plus ``-j 0``: no
#: worker processes, which does not change the random stream)
COMMANDS = {
    "prknn": "python router/PRKnn-knn/knn.py --seed 0 --knearest 5 --data data/tmp_perf.npz",
    "c-cluster": "python router/C-RoBERTa-cluster/cluster.py --seed 0 --numcluster 3 "
                 "--data data/tmp_perf.npz",
    "oracle": "python router/R_o/r_o_router.py --p 1.0 --data data/tmp_perf.npz",
    "random": "python router/R_o/r_o_router.py --p 0.0 --data data/tmp_perf.npz",
    "linearr": "python seeded.py router/MLPR_LinearR/train.py --datadir data/tmp_perf.npz "
               "--lr 0.1 --model linear --epoch 10 --train-batch 1024 -j 0 "
               "--checkpoint ckpt/linear",
    "mlpr": "python seeded.py router/MLPR_LinearR/train.py --datadir data/tmp_perf.npz "
            "--lr 0.001 --model FNN --epoch 100 --hidden_size 400 --train-batch 1024 -j 0 "
            "--checkpoint ckpt/MLPR",
}
#: train.py calls .cuda() and never seeds torch: run it on the CPU with torch seeded 0
#: (torchvision, imported by its unused plotting helpers, is stubbed)
SEEDED = """import runpy, sys, types, torch
# utils/visualize.py imports torchvision for image plots train.py never draws
tv = types.ModuleType('torchvision'); tv.transforms = types.ModuleType('torchvision.transforms')
sys.modules['torchvision'] = tv; sys.modules['torchvision.transforms'] = tv.transforms
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.manual_seed(0)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, __import__('os').path.dirname(script))
runpy.run_path(script, run_name='__main__')
"""
ACC_REF = 0.637  # RouterEval's reference score for mmlu_pro (test_router.py)


def write_leaderboard(work: Path, data_dir: str, dim: int, n_features: int) -> dict:
    """MMLU-Pro in the layout get_router_dataset.py reads; missing cells as 0."""
    from llmrec.datasets import load
    from llmrec.encoders import TfidfEncoder
    rec = load("mmlu-pro", data_dir=data_dir)
    Y = rec.dense(fill=0.0).astype(np.float64)          # (prompts, models)
    enc = TfidfEncoder(dim=dim, n_features=n_features, random_state=0).fit(rec.texts)
    V = enc.encode(rec.texts).astype(np.float32)
    for sub in ("leaderboard_score", "leaderboard_embed/leaderboard_mmlu_pro_embed",
                "leaderboard_prompt"):
        (work / "data" / sub).mkdir(parents=True, exist_ok=True)
    with open(work / "data/leaderboard_score/leaderboard_mmlu_pro.pkl", "wb") as f:
        pickle.dump({"data": {"mmlu_pro": {"correctness": Y}}, "model": list(rec.llm_names)}, f)
    with open(work / "data/leaderboard_embed/leaderboard_mmlu_pro_embed/tfidf_result.pkl",
              "wb") as f:
        pickle.dump({"mmlu_pro": V}, f)
    with open(work / "data/leaderboard_prompt/leaderboard_mmlu_pro_prompt.pkl", "wb") as f:
        pickle.dump({"mmlu_pro": np.asarray(rec.texts, dtype=object)}, f)
    return {"n_prompts": rec.n_prompts, "n_llms": rec.n_llms,
            "n_missing_cells": int(rec.n_prompts * rec.n_llms - rec.n_observed),
            "embedding_sha": __import__("hashlib").sha256(V.tobytes()).hexdigest()[:16]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routereval", required=True, help="a checkout of MilkThink-Lab/RouterEval")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/routereval_reference_run")
    ap.add_argument("--out", default=str(REPO / "tests/data/routereval_reference/mmlu_pro.json"))
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--n-features", type=int, default=2 ** 16)
    ap.add_argument("--baselines", default=",".join(COMMANDS))
    args = ap.parse_args(argv)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.routereval, work, ignore=shutil.ignore_patterns(".git"))
    src = (work / "get_router_dataset.py").read_text()
    for old, new in EDITS:
        if src.count(old) != 1:
            raise SystemExit(f"edit not applicable to this get_router_dataset.py: {old[:60]!r}")
        src = src.replace(old, new)
    (work / "get_router_dataset.py").write_text(src)
    (work / "seeded.py").write_text(SEEDED)
    meta = write_leaderboard(work, args.data_dir, args.dim, args.n_features)
    t0 = time.time()
    subprocess.run([sys.executable, "get_router_dataset.py"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    with open(work / "data/router_dataset/mmlu_pro_router_dataset.pkl", "rb") as f:
        rd = pickle.load(f)
    out = {"meta": {**meta, "sizes": list(SIZES), "encoder": {"type": "tfidf", "dim": args.dim,
                    "n_features": args.n_features, "random_state": 0, "fit_on": "all prompts"},
                    "commands": {b: COMMANDS[b] for b in args.baselines.split(",")},
                    "acc_ref": ACC_REF},
           "split": {k: [int(i) for i in rd["split_index"][k][:10]]
                     for k in ("train_indices", "val_indices", "test_indices")},
           "split_sizes": {k: int(len(v)) for k, v in rd["split_index"].items()},
           "pools": {}, "figures": []}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    for level in ("easy", "hard"):
        for m, by_group in rd[level].items():
            for group in ("all_strong", "all_weak", "strong_to_weak"):
                d = by_group[group]["data"]
                out["pools"][f"{m}/{group}"] = [str(x) for x in by_group[group]["model"]]
                np.savez(work / "data/tmp_perf.npz", train_embed=rd["embedding"]["train_embed"],
                         val_embed=rd["embedding"]["val_embed"],
                         test_embed=rd["embedding"]["test_embed"],
                         train_score=d["train_score"], val_score=d["val_score"],
                         test_score=d["test_score"])
                for b in args.baselines.split(","):
                    r = subprocess.run(COMMANDS[b].replace("python ", sys.executable + " ", 1), shell=True, cwd=work, check=True, text=True,
                                       capture_output=True, env=env)
                    # as test_router.py: the last three numbers printed are mu, Vb, Ep
                    fl = [float(x) for x in re.findall(
                        r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", r.stdout)][-3:]
                    row = {"baseline": b, "m": int(m), "group": group, "mu": fl[0],
                           "vr": fl[0] / ACC_REF, "vb": fl[1], "ep": fl[2]}
                    out["figures"].append(row)
                    print(json.dumps(row), flush=True)
    out["meta"]["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
