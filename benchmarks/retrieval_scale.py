"""Ranking at archive scale (issue #16): queries ranked against N = 200,000 candidates, run by hand.

    python benchmarks/retrieval_scale.py --candidates 200000 --queries 20480 --dim 512

Measures the extra memory of `echolib.ranking.ranks_from_embeddings` beyond its inputs (the peak resident set
after the inputs exist, its high-water mark reset, in a fresh process) and its time against the similarity matmul alone over the same chunks, and, for comparison, the
previous fixed 2,048-row chunks with an out-of-place comparison. Writes benchmarks/results/retrieval_scale.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Reset the peak resident set (Linux: clear_refs 5) and return the current one, in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def measure(mode: str, n: int, q: int, d: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from echolib.ranking import _ranks_rows, chunk_rows, ranks_from_embeddings

    torch.manual_seed(0)
    cand = torch.nn.functional.normalize(torch.randn(n, d), dim=-1)
    queries = cand[:q] + 0.05 * torch.randn(q, d)
    before = _reset_peak()  # the set-up's own temporaries must not hide the ranking's peak
    t0 = time.perf_counter()
    if mode == "rank":
        # one direction: the queries (the first q candidates' partners) against every candidate
        step = chunk_rows(n)
        bt = cand.T  # as ranks_from_embeddings: a view, no copy
        for i in range(0, q, step):
            _ranks_rows(queries[i:i + step] @ bt, i, inplace=True)
    elif mode == "matmul":
        step = chunk_rows(n)
        bt = cand.T
        for i in range(0, q, step):
            sims = queries[i:i + step] @ bt
            del sims  # one chunk alive at a time, as in the ranking
    elif mode == "timing":  # both, chunk by chunk in one process: a ratio that the machine's load cannot skew
        step, bt, t_mm, t_rank = chunk_rows(n), cand.T, 0.0, 0.0
        for i in range(0, q, step):
            a = time.perf_counter()
            sims = queries[i:i + step] @ bt
            b = time.perf_counter()
            del sims
            c = time.perf_counter()
            _ranks_rows(queries[i:i + step] @ bt, i, inplace=True)
            t_mm, t_rank = t_mm + b - a, t_rank + time.perf_counter() - c
        return {"mode": mode, "matmul_seconds": round(t_mm, 2), "rank_seconds": round(t_rank, 2),
                "rank_over_matmul": round(t_rank / t_mm, 3)}
    elif mode == "previous":  # fixed 2,048-row chunks, comparison into a new boolean tensor
        for i in range(0, q, 2048):
            _ranks_rows(queries[i:i + 2048] @ cand.T, i)
    seconds = time.perf_counter() - t0
    extra = _status_kib("VmHWM") * 1024 - before
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
    for mode in ("matmul", "rank", "previous", "timing"):
        r = subprocess.run([sys.executable, __file__, "--mode", mode, "--candidates", str(a.candidates), "--queries",
                            str(a.queries), "--dim", str(a.dim)], capture_output=True, text=True, check=True)
        runs[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        print(runs[mode], flush=True)
    result = {"candidates": a.candidates, "queries": a.queries, "dim": a.dim, **runs,
              "rank_over_matmul": runs["timing"]["rank_over_matmul"],
              "rank_extra_gib": runs["rank"]["extra_gib"], "previous_extra_gib": runs["previous"]["extra_gib"]}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "retrieval_scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
