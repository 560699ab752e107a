"""Study-level retrieval: study embeddings (mean of clip embeddings) and rank metrics both ways.

`rank_metrics(sim)` takes sim[i, j] = similarity of study i's videos and study j's report, correct pairs on the
diagonal. Ranks are 1-based and ties count against the correct item: rank = 1 + #{other candidates with
similarity >= the correct one}, so a collapsed model (all similarities equal) gets the worst rank, not the best.
MCMRR is the mean rank of the correct item. Computed in row chunks sized to a memory budget (1 GiB by default),
so N = 200,000 needs no N x N matrix when `sim` is given as the two embedding matrices
(`rank_metrics_from_embeddings`).
"""

from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10)


def study_embeddings(clip_emb: torch.Tensor | np.ndarray, study_ids) -> tuple[torch.Tensor, list]:
    """Mean of each study's clip embeddings, re-normalised; returns (embeddings, study ids in first-seen order)."""
    emb = torch.as_tensor(np.asarray(clip_emb) if not torch.is_tensor(clip_emb) else clip_emb).float()
    ids = list(study_ids)
    order = list(dict.fromkeys(ids))
    index = {s: i for i, s in enumerate(order)}
    idx = torch.tensor([index[s] for s in ids])
    sums = torch.zeros(len(order), emb.shape[1]).index_add_(0, idx, emb)
    counts = torch.bincount(idx, minlength=len(order)).clamp(min=1).unsqueeze(1)
    return torch.nn.functional.normalize(sums / counts, dim=-1), order


def _ranks_rows(sim_rows: torch.Tensor, offset: int, inplace: bool = False) -> torch.Tensor:
    """1-based ranks of the correct item of each row (column `offset + i` of row i); with `inplace` the rows
    (a scratch chunk) are overwritten by the comparison instead of allocating a boolean copy."""
    n = sim_rows.shape[0]
    correct = sim_rows[torch.arange(n), torch.arange(n) + offset].unsqueeze(1).clone()
    if inplace:  # summed as float32 (exact below 2**24 candidates): an int64 sum would copy the chunk at 2x size
        return sim_rows.ge_(correct).sum(dim=1).to(torch.int64)
    return (sim_rows >= correct).sum(dim=1)  # includes the correct item itself -> 1-based, ties count against


#: memory the chunked ranking may use for its scratch similarity rows (the default budget)
MEMORY_BUDGET = 1 << 30


def chunk_rows(n_candidates: int, budget: int = MEMORY_BUDGET) -> int:
    """Rows of similarities (float32, ranked in place) that fit in `budget` bytes, at least one; a tenth of the
    budget is left for the ranks and the allocator's slack."""
    return max(1, int(budget * 0.9) // (4 * max(n_candidates, 1)))


def ranks(sim: torch.Tensor | np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks of the correct item: video->report (rows) and report->video (columns)."""
    sim = torch.as_tensor(sim).float()
    v2r = torch.cat([_ranks_rows(sim[i:i + chunk], i) for i in range(0, sim.shape[0], chunk)])
    simt = sim.T
    r2v = torch.cat([_ranks_rows(simt[i:i + chunk], i) for i in range(0, simt.shape[0], chunk)])
    return v2r.numpy(), r2v.numpy()


def ranks_from_embeddings(video: torch.Tensor, text: torch.Tensor, chunk: int | None = None,
                          budget: int = MEMORY_BUDGET):
    """Same as ranks(video @ text.T) without materialising the N x N matrix: rows of similarities in chunks sized
    to `budget` bytes (or `chunk` rows), each ranked in place (N = 200,000 stays within 1 GiB)."""
    video, text = torch.as_tensor(video).float(), torch.as_tensor(text).float()
    out = []
    for a, b in ((video, text), (text, video)):
        step = chunk or chunk_rows(b.shape[0], budget)
        bt = b.T  # a view: BLAS multiplies by the transpose without a copy of the candidates
        parts = [_ranks_rows(a[i:i + step] @ bt, i, inplace=True) for i in range(0, a.shape[0], step)]
        out.append(torch.cat(parts).numpy())
    return out[0], out[1]


def ranks_leaving_out_groups(video, text, groups, chunk: int | None = None, budget: int = MEMORY_BUDGET):
    """`ranks_from_embeddings` with, for each query, the other items of its group left out of the candidates
    (e.g. the other studies of the same patient, whose reports may be the same): 1 + #{candidates outside the
    query's group, other than the correct one, scoring at least as high}. Returns (v2r, r2v)."""
    video, text = torch.as_tensor(video).float(), torch.as_tensor(text).float()
    _, codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    g = torch.from_numpy(codes.astype(np.int64))
    out = []
    for a, b in ((video, text), (text, video)):
        step = chunk or chunk_rows(b.shape[0], budget)
        bt, parts = b.T, []
        for i in range(0, a.shape[0], step):
            sims = a[i:i + step] @ bt
            rows = torch.arange(sims.shape[0])
            same = g[i:i + step, None] == g[None, :]
            same[rows, rows + i] = False  # the correct item stays
            parts.append(_ranks_rows(sims.masked_fill_(same, float("-inf")), i, inplace=True))
        out.append(torch.cat(parts).numpy())
    return out[0], out[1]


def query_ranks(queries: torch.Tensor, candidates: torch.Tensor, correct, chunk: int | None = None,
                budget: int = MEMORY_BUDGET) -> np.ndarray:
    """1-based rank of candidate `correct[i]` for query i (e.g. each clip against every study's report), ties
    against, in chunks of rows like `ranks_from_embeddings`; queries may outnumber candidates."""
    queries, candidates = torch.as_tensor(queries).float(), torch.as_tensor(candidates).float()
    correct = torch.as_tensor(np.asarray(correct), dtype=torch.int64)
    step = chunk or chunk_rows(candidates.shape[0], budget)
    bt = candidates.T
    out = []
    for i in range(0, queries.shape[0], step):
        sims = queries[i:i + step] @ bt
        right = sims.gather(1, correct[i:i + step].unsqueeze(1))
        out.append(sims.ge_(right).sum(dim=1).to(torch.int64))
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def metrics_from_ranks(v2r: np.ndarray, r2v: np.ndarray) -> dict:
    out = {"n": int(len(v2r)), "mcmrr_v2r": float(v2r.mean()), "mcmrr_r2v": float(r2v.mean()),
           "median_rank_v2r": float(np.median(v2r)), "median_rank_r2v": float(np.median(r2v))}
    for k in KS:
        out[f"r{k}_v2r"] = float((v2r <= k).mean())
        out[f"r{k}_r2v"] = float((r2v <= k).mean())
    return out


def rank_metrics(sim, chunk: int = 4096) -> dict:
    """MCMRR, median rank and R@1/5/10 (fractions) in both directions, and n."""
    return metrics_from_ranks(*ranks(sim, chunk))


def rank_metrics_from_embeddings(video, text, chunk: int | None = None, budget: int = MEMORY_BUDGET) -> dict:
    return metrics_from_ranks(*ranks_from_embeddings(video, text, chunk, budget))
