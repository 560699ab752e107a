"""Fast, chunked retrieval metrics against an obvious reference, ties included."""

import numpy as np
import pytest
import torch

from echolib.ranking import rank_metrics, rank_metrics_from_embeddings, ranks, study_embeddings


def brute_ranks(sim):
    n = len(sim)
    v2r = [1 + sum(1 for j in range(n) if j != i and sim[i][j] >= sim[i][i]) for i in range(n)]
    r2v = [1 + sum(1 for j in range(n) if j != i and sim[j][i] >= sim[i][i]) for i in range(n)]
    return np.array(v2r), np.array(r2v)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    sim = rng.integers(0, 4, size=(37, 37)).astype(np.float32)  # many ties
    v2r, r2v = ranks(sim, chunk=5)
    bv, br = brute_ranks(sim)
    np.testing.assert_array_equal(v2r, bv)
    np.testing.assert_array_equal(r2v, br)
    m = rank_metrics(sim, chunk=7)
    assert m["mcmrr_v2r"] == pytest.approx(bv.mean()) and m["mcmrr_r2v"] == pytest.approx(br.mean())
    assert m["r10_v2r"] == pytest.approx((bv <= 10).mean()) and m["r5_r2v"] == pytest.approx((br <= 5).mean())
    assert m["median_rank_v2r"] == pytest.approx(np.median(bv)) and m["n"] == 37


def test_collapsed_model_scores_worst_and_identity_best():
    n = 20
    worst = rank_metrics(np.ones((n, n)))
    assert worst["mcmrr_v2r"] == n and worst["r1_v2r"] == 0.0
    best = rank_metrics(np.eye(n))
    assert best["mcmrr_r2v"] == 1 and best["r1_r2v"] == 1.0


def test_embeddings_path_equals_matrix_path():
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1)
    t = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=1)
    assert rank_metrics_from_embeddings(v, t, chunk=6) == rank_metrics(v @ t.T)


def test_study_embeddings_mean_then_normalise():
    clips = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    emb, order = study_embeddings(clips, ["a", "a", "b"])
    assert order == ["a", "b"]
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0]) / 2**0.5)
    torch.testing.assert_close(emb[1], torch.tensor([0.6, 0.8]))


def test_chunks_follow_a_memory_budget_and_rank_like_the_full_matrix():
    from echolib.ranking import chunk_rows, ranks_from_embeddings

    torch.manual_seed(3)
    v = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
    t = v.clone()
    t[7] = t[3]  # a tie: study 7's report equals study 3's
    budget = 4 * 50 * 3 * 10 // 9 + 1  # nine tenths of it: three rows of 50 float32 similarities
    assert chunk_rows(50, budget) == 3 and chunk_rows(50, budget - 2) == 2
    assert chunk_rows(200_000) == 1207  # 0.9 GiB of similarity rows at N = 200,000
    full = ranks(v @ t.T)
    got = ranks_from_embeddings(v, t, budget=budget)
    np.testing.assert_array_equal(got[0], full[0])
    np.testing.assert_array_equal(got[1], full[1])


@pytest.mark.parametrize("chunk", [None, 3])
def test_query_ranks_match_brute_force_with_ties(chunk):
    """Per-clip ranks: 23 queries (clips) against 7 candidates (reports), the correct one given per query."""
    from echolib.ranking import query_ranks

    rng = np.random.default_rng(5)
    q = torch.from_numpy(rng.integers(0, 3, size=(23, 4)).astype(np.float32))  # integer vectors: many tied scores
    c = torch.from_numpy(rng.integers(0, 3, size=(7, 4)).astype(np.float32))
    right = rng.integers(0, 7, size=23)
    sim = (q @ c.T).numpy()
    brute = [1 + sum(1 for j in range(7) if j != right[i] and sim[i, j] >= sim[i, right[i]]) for i in range(23)]
    np.testing.assert_array_equal(query_ranks(q, c, right, chunk=chunk), brute)


@pytest.mark.parametrize("chunk", [None, 4])
def test_ranks_leaving_out_a_querys_group_match_brute_force(chunk):
    """Studies of one patient in a group: another study of the query's patient is no candidate."""
    from echolib.ranking import ranks_leaving_out_groups

    rng = np.random.default_rng(7)
    v = torch.from_numpy(rng.integers(0, 3, size=(15, 3)).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, 3, size=(15, 3)).astype(np.float32))
    groups = ["p1", "p1", "p2", "p3", "p3", "p3"] + [f"q{i}" for i in range(9)]
    sim = (v @ t.T).numpy()
    n = 15

    def brute(s):
        return [1 + sum(1 for j in range(n) if j != i and groups[j] != groups[i] and s[i][j] >= s[i][i])
                for i in range(n)]

    v2r, r2v = ranks_leaving_out_groups(v, t, groups, chunk=chunk)
    np.testing.assert_array_equal(v2r, brute(sim))
    np.testing.assert_array_equal(r2v, brute(sim.T))
    plain, _ = ranks(sim)
    assert (v2r <= plain).all() and (v2r < plain).any()  # leaving candidates out never worsens a rank
