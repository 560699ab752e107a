"""Ranking at archive scale (issue #16): queries ranked against N = 200,000 candidates, run by hand.

    python benchmarks/retrieval_scale.py --candidates 200000 --queries 20480 --dim 512

Measures the extra memory of `echolib.ranking.ranks_from_embeddings` beyond its inputs (peak resident set, in a
fresh process) and its time against the similarity matmul alone over the same chunks, and, for comparison, the
previous fixed 2,048-row chunks with an out-of-place comparison. Writes benchmarks/results/retrieval_scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(mode: str, n: int, q: int, d: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from echolib.ranking import _ranks_rows, chunk_rows, ranks_from_embeddings

    torch.manual_seed(0)
    cand = torch.nn.functional.normalize(torch.randn(n, d), dim=-1)
    queries = cand[:q] + 0.05 * torch.randn(q, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if mode == "rank":
        # one direction: the queries (the first q candidates' partners) against every candidate
        step = chunk_rows(n)
        bt = cand.T.contiguous()
        for i in range(0, q, step):
            _ranks_rows(queries[i:i + step] @ bt, i, inplace=True)
    elif mode == "matmul":
        step = chunk_rows(n)
        bt = cand.T.contiguous()
        for i in range(0, q, step):
            _ = queries[i:i + step] @ bt
    elif mode == "previous":  # fixed 2,048-row chunks, comparison into a new boolean tensor
        for i in range(0, q, 2048):
            _ranks_rows(queries[i:i + 2048] @ cand.T, i)
    seconds = time.perf_counter() - t0
    extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    del ranks_from_embeddings
    return {"mode": mode, "seconds": round(seconds, 2), "extra_gib": round(extra / 2**30, 3),
            "chunk_rows": chunk_rows(n) if mode != "previous" else 2048}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=20_480)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    if a.mode:  # one measurement in this fresh process
        print(json.dumps(measure(a.mode, a.candidates, a.queries, a.dim)))
        return
    runs = {}
    for mode in ("matmul", "rank", "previous"):
        r = subprocess.run([sys.executable, __file__, "--mode", mode, "--candidates", str(a.candidates), "--queries",
                            str(a.queries), "--dim", str(a.dim)], capture_output=True, text=True, check=True)
        runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        print(runs[mode], flush=True)
    result = {"candidates": a.candidates, "queries": a.queries, "dim": a.dim, **runs,
              "rank_over_matmul": round(runs["rank"]["seconds"] / runs["matmul"]["seconds"], 3),
              "previous_over_matmul": round(runs["previous"]["seconds"] / runs["matmul"]["seconds"], 3)}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "retrieval_scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
