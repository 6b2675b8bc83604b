"""Time and peak memory of ``make_synthetic`` at RouterEval scale (40,000 x 8,500).

Run (one process per setting, so that peak memory is that setting's own):

    OMP_NUM_THREADS=1 python benchmarks/bench_synthetic_scale.py --density 0.05
    OMP_NUM_THREADS=1 python benchmarks/bench_synthetic_scale.py --prompts 4000 --density 1

Peak memory is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (whole process,
including the Python interpreter and imports, measured before and after).
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=40_000)
    ap.add_argument("--llms", type=int, default=8_500)
    ap.add_argument("--topics", type=int, default=16)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from llmrec.data.synthetic import make_synthetic

    before = _peak_mib()
    t0 = time.perf_counter()
    rec = make_synthetic(args.prompts, args.llms, n_topics=args.topics, seed=args.seed,
                         density=args.density)
    seconds = time.perf_counter() - t0
    out = {"prompts": args.prompts, "llms": args.llms, "density": args.density,
           "observed": rec.n_observed, "seconds": round(seconds, 2),
           "peak_rss_mib_before": round(before, 1), "peak_rss_mib": round(_peak_mib(), 1),
           "csr_mib": round((rec.scores.data.nbytes + rec.scores.indices.nbytes
                             + rec.scores.indptr.nbytes) / 2**20, 1)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
