import numpy as np
import polars as pl
import pytest
import torch

from echolib.interpret import PROMPTS, interpret, macro_f1


def test_macro_f1_hand_computed():
    true = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    # a: tp1 fp1 fn1 -> 0.5 ; b: tp2 fp1 fn0 -> 0.8 ; c: tp0 fp0 fn1 -> 0
    assert macro_f1(true, pred, ["a", "b", "c", "d"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


class _Oracle(torch.nn.Module):
    """Text encoder that maps each prompt to a one-hot of its sentence; a study 'video' equals its true prompt."""

    def __init__(self, sentences):
        super().__init__()
        self.index = {s: i for i, s in enumerate(sentences)}
        self.dim = len(sentences)

    def scale(self):
        return torch.tensor(100.0)

    def encode_text(self, ids, mask):
        return torch.stack([torch.nn.functional.one_hot(torch.tensor(int(i[0])), self.dim).float() for i in ids])


class _Tok:
    def __init__(self, sentences):
        self.index = {s: i for i, s in enumerate(sentences)}

    def __call__(self, texts, **kw):
        ids = torch.tensor([[self.index.get(t, 0)] for t in texts])
        if kw.get("return_tensors"):
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        return {"input_ids": ids.tolist()}


def test_oracle_embeddings_give_perfect_zero_shot():
    from echolib.interpret import EF_VALUES, ef_prompt

    sentences = [s for g in PROMPTS.values() for s in g.values()] + [ef_prompt(int(v)) for v in EF_VALUES]
    model, tok = _Oracle(sentences), _Tok(sentences)
    truth = pl.DataFrame({"mr": ["高度", "なし・微量", "軽度"], "ef": [30.0, 60.0, 45.0]})
    emb = torch.stack([torch.nn.functional.one_hot(torch.tensor(model.index[PROMPTS["mr"][g]]), model.dim).float()
                       for g in truth["mr"]])
    res = interpret(model, tok, emb, truth.select("mr"), n_boot=20)
    assert res["findings"]["mr"]["accuracy"] == 1.0 and res["findings"]["mr"]["macro_f1"] == 1.0
    ef_emb = torch.stack([torch.nn.functional.one_hot(torch.tensor(model.index[ef_prompt(int(v))]), model.dim).float()
                          for v in truth["ef"]])
    res = interpret(model, tok, ef_emb, truth.select("ef"), n_boot=20)
    assert res["ef"]["mae"] < 0.5
    assert np.isfinite(res["ef"]["mae_ci"][0])


def _encoded(n: int, grades: list[str], seed: int, informative: bool):
    """Study embeddings that hold the grade linearly (one-hot + noise) or nothing (noise only)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(grades), size=n)
    x = rng.normal(0, 0.3, size=(n, 16))
    if informative:
        x[np.arange(n), y] += 3.0
    return torch.from_numpy(x).float(), pl.DataFrame({"mr": [grades[i] for i in y],
                                                     "ef": 30 + 10 * y + rng.normal(0, 1, n)})


def test_probe_reads_what_the_embedding_holds_and_nothing_more():
    from echolib.interpret import probe

    grades = list(PROMPTS["mr"])
    g = {"mr": tuple(grades), "lvh": ("なし", "軽度")}
    xtr, ttr = _encoded(400, grades, 0, True)
    xte, tte = _encoded(200, grades, 1, True)
    ttr, tte = ttr.with_columns(lvh=pl.lit("なし")), tte.with_columns(lvh=pl.lit("なし"))
    res = probe(xtr, ttr, xte, tte, g, n_boot=50, test_ids=[f"s{i}" for i in range(200)])
    assert res["findings"]["mr"]["accuracy"] > 0.95 and res["findings"]["mr"]["macro_f1"] > 0.95
    assert res["skipped"] == {"lvh": "one grade among 400 training studies"}  # one grade: nothing to learn
    assert res["ef"]["mae"] < 3 and res["ef"]["mae_predict_mean"] > 8  # EF steps of 10 per grade, noise sd 1
    assert res["predictions"]["study_id"].to_list()[:2] == ["s0", "s1"]
    xtr, ttr = _encoded(400, grades, 0, False)
    xte, tte = _encoded(200, grades, 1, False)
    res = probe(xtr, ttr, xte, tte, {"mr": tuple(grades)}, n_boot=50)
    lo, hi = res["findings"]["mr"]["accuracy_ci"]
    assert lo < 1 / len(grades) + 0.02 and res["findings"]["mr"]["accuracy"] < 0.4  # chance: 0.25
    with pytest.raises(ValueError, match="embeddings for"):
        probe(xtr[:10], ttr, xte, tte, {"mr": tuple(grades)})


def test_score_findings_and_paired_differences_hand_computed():
    from echolib.interpret import paired_finding_differences, score_findings

    true = ["a", "a", "b", "b", "c"]
    pa = pl.DataFrame({"study_id": list("vwxyz"), "finding": "f", "true": true, "pred": ["a", "b", "b", "b", "a"]})
    pb = pa.with_columns(pred=pl.Series(true))  # perfect
    s = score_findings(pa, {"f": ["a", "b", "c"]}, n_boot=100)["f"]
    assert s["accuracy"] == pytest.approx(3 / 5) and s["macro_f1"] == pytest.approx((0.5 + 0.8) / 3)
    assert s["majority_accuracy"] == pytest.approx(2 / 5) and s["accuracy_ci"][0] <= 0.6 <= s["accuracy_ci"][1]
    d = paired_finding_differences(pa, pb.sample(fraction=1.0, shuffle=True, seed=1), {"f": ["a", "b", "c"]},
                                   n_boot=100)["f"]
    assert d["macro_f1"] == pytest.approx((0.5 + 0.8) / 3 - 1) and d["accuracy"] == pytest.approx(-2 / 5)
    assert d["accuracy_ci"][1] <= 0  # b is never worse on any resample
    same = paired_finding_differences(pa, pa, {"f": ["a", "b", "c"]}, n_boot=50)["f"]
    assert same["macro_f1"] == 0 and same["macro_f1_ci"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="different studies"):
        paired_finding_differences(pa, pb.with_columns(study_id=pl.lit("q")), {"f": ["a", "b", "c"]})


def test_paired_differences_over_seeds_average_them_and_widen_with_their_spread():
    """Two seeds of run a (one perfect, one always wrong) against a perfect b: the value is the mean over a's seeds
    (accuracy -0.5), and the interval spans what drawing either seed gives (down to -1, up to 0)."""
    from echolib.interpret import paired_finding_differences

    true = ["a", "b"] * 10
    ids = [f"s{i}" for i in range(20)]
    good = pl.DataFrame({"study_id": ids, "finding": "f", "true": true, "pred": true})
    bad = good.with_columns(pred=pl.Series(["b", "a"] * 10))
    d = paired_finding_differences([good, bad], [good], {"f": ["a", "b"]}, n_boot=400)["f"]
    assert d["accuracy"] == pytest.approx(-0.5) and d["macro_f1"] == pytest.approx(-0.5) and d["seeds"] == (2, 1)
    assert d["accuracy_ci"][0] == pytest.approx(-1.0) and d["accuracy_ci"][1] == pytest.approx(0.0)
    one = paired_finding_differences([bad], [good], {"f": ["a", "b"]}, n_boot=100)["f"]
    assert one["accuracy"] == -1 and one["accuracy_ci"] == (-1.0, -1.0)
