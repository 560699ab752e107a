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
