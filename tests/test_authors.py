"""The authors' released checkpoints: small random ones written here with exactly their key names and nesting
(`module.` prefix, transformers-4.x ViViT names or VideoMAE v2's original names, `text.transformer.*`,
`text.proj.{0,2}`), read back and compared with a forward pass written out by hand from the original architectures;
saving in that layout and reading again gives the same keys and embeddings; partial loads are refused."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from echolib.io.weights import DamagedCheckpointError
from echolib.models.authors import (
    MEAN,
    STD,
    AuthorsCheckpointError,
    clip_input,
    load_authors_checkpoint,
    save_authors_checkpoint,
)

H, INTER, EMBED, LAYERS, FRAMES = 64, 128, 32, 2, 4  # one head of 64 channels; 224 px, 16 px patches, tubelet 2
TOKENS = (FRAMES // 2) * (224 // 16) ** 2


def _rand(*shape, scale=0.05):
    return torch.randn(*shape) * scale


def _block(prefix: str, names: dict) -> dict:
    """One transformer block's tensors under the layout's names (`names` maps a role to a key suffix)."""
    sd = {}
    for role, (out, inp) in {"q": (H, H), "k": (H, H), "v": (H, H), "o": (H, H), "fc1": (INTER, H),
                             "fc2": (H, INTER)}.items():
        if role in names:
            sd[f"{prefix}{names[role]}.weight"] = _rand(out, inp)
            if f"{role}_bias" not in names.get("no_bias", ()):
                sd[f"{prefix}{names[role]}.bias"] = _rand(out)
    for ln in ("ln1", "ln2"):
        sd[f"{prefix}{names[ln]}.weight"] = 1 + _rand(H)
        sd[f"{prefix}{names[ln]}.bias"] = _rand(H)
    return sd


VIVIT_4X = {"q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
            "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense",
            "ln1": "layernorm_before", "ln2": "layernorm_after"}


def _text(vocab: int) -> dict:
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=vocab, hidden_size=H, num_hidden_layers=1, num_attention_heads=1,
                                intermediate_size=INTER, max_position_embeddings=300), add_pooling_layer=False)
    sd = {f"text.transformer.{k}": v for k, v in bert.state_dict().items()}  # BERT's names, as their BertModel
    sd["text.proj.0.weight"], sd["text.proj.2.weight"] = _rand(48, H, scale=0.2), _rand(EMBED, 48, scale=0.2)
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return sd


def vivit_state(vocab: int = 120) -> dict:
    sd = {"visual.model.embeddings.cls_token": _rand(1, 1, H),
          "visual.model.embeddings.position_embeddings": _rand(1, 1 + TOKENS, H),
          "visual.model.embeddings.patch_embeddings.projection.weight": _rand(H, 3, 2, 16, 16, scale=0.02),
          "visual.model.embeddings.patch_embeddings.projection.bias": _rand(H),
          "visual.model.layernorm.weight": 1 + _rand(H), "visual.model.layernorm.bias": _rand(H),
          "visual.model.pooler.dense.weight": _rand(EMBED, H, scale=0.2), "visual.model.pooler.dense.bias": _rand(EMBED)}
    for i in range(LAYERS):
        sd.update(_block(f"visual.model.encoder.layer.{i}.", VIVIT_4X))
    return {**sd, **_text(vocab)}


def videomae2_state(vocab: int = 120) -> dict:
    sd = {"visual.model.model.patch_embed.proj.weight": _rand(H, 3, 2, 16, 16, scale=0.02),
          "visual.model.model.patch_embed.proj.bias": _rand(H),
          "visual.model.model.fc_norm.weight": 1 + _rand(H), "visual.model.model.fc_norm.bias": _rand(H),
          "visual.model.model.head.weight": _rand(EMBED, H, scale=0.2), "visual.model.model.head.bias": _rand(EMBED)}
    for i in range(LAYERS):
        p = f"visual.model.model.blocks.{i}."
        sd.update(_block(p, {"o": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2", "ln1": "norm1", "ln2": "norm2"}))
        sd[p + "attn.qkv.weight"] = _rand(3 * H, H)
        sd[p + "attn.q_bias"], sd[p + "attn.v_bias"] = _rand(H), _rand(H)
    return {**sd, **_text(vocab)}


def write_checkpoint(path, state: dict, name: str):
    torch.save({"epoch": 9, "name": name, "state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]}, "scaler": {"scale": 65536.0}}, path)
    return path


# -- the original architectures, written out by hand ----------------------------------------------------------------

def _ln(x, sd, key, eps):
    return F.layer_norm(x, (H,), sd[key + ".weight"], sd[key + ".bias"], eps)


def _attention(x, q, k, v):
    a = torch.softmax(q(x) @ k(x).transpose(-1, -2) / math.sqrt(H), dim=-1)  # one head
    return a @ v(x)


def _patches(x, sd, key):
    """(B, T, 3, S, S) -> (B, tokens, H): the 2x16x16 tubelet convolution, tokens in (t, h, w) order."""
    return F.conv3d(x.permute(0, 2, 1, 3, 4), sd[key + ".weight"], sd[key + ".bias"], stride=(2, 16, 16)
                    ).flatten(2).transpose(1, 2)


def _gelu_fast(x):
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def vivit_reference(x, sd):
    lin = lambda k: (lambda h: F.linear(h, sd[k + ".weight"], sd[k + ".bias"]))  # noqa: E731
    h = _patches(x, sd, "visual.model.embeddings.patch_embeddings.projection")
    h = torch.cat([sd["visual.model.embeddings.cls_token"].expand(len(h), -1, -1), h], 1)
    h = h + sd["visual.model.embeddings.position_embeddings"]
    for i in range(LAYERS):
        p = f"visual.model.encoder.layer.{i}."
        y = _ln(h, sd, p + "layernorm_before", 1e-6)
        h = h + lin(p + "attention.output.dense")(_attention(y, *(lin(p + f"attention.attention.{n}")
                                                                  for n in ("query", "key", "value"))))
        y = _ln(h, sd, p + "layernorm_after", 1e-6)
        h = h + lin(p + "output.dense")(_gelu_fast(lin(p + "intermediate.dense")(y)))
    h = _ln(h, sd, "visual.model.layernorm", 1e-6)
    return lin("visual.model.pooler.dense")(h[:, 0])  # identity activation


def _sinusoid(n, d):
    pos = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None]
    pos[:, 0::2], pos[:, 1::2] = np.sin(pos[:, 0::2]), np.cos(pos[:, 1::2])
    return torch.tensor(pos, dtype=torch.float32)[None]


def videomae2_reference(x, sd):
    p0 = "visual.model.model."
    lin = lambda k, b=True: (lambda h: F.linear(h, sd[p0 + k + ".weight"], sd[p0 + k + ".bias"] if b else None))  # noqa: E731
    h = _patches(x, sd, p0 + "patch_embed.proj")
    h = h + _sinusoid(h.shape[1], H)  # fixed positions, not stored
    for i in range(LAYERS):
        p = f"blocks.{i}."
        y = _ln(h, sd, p0 + p + "norm1", 1e-6)
        bias = torch.cat([sd[p0 + p + "attn.q_bias"], torch.zeros(H), sd[p0 + p + "attn.v_bias"]])
        q, k, v = F.linear(y, sd[p0 + p + "attn.qkv.weight"], bias).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(H), dim=-1) @ v
        h = h + lin(p + "attn.proj")(a)
        y = _ln(h, sd, p0 + p + "norm2", 1e-6)
        h = h + lin(p + "mlp.fc2")(F.gelu(lin(p + "mlp.fc1")(y)))
    return lin("head")(_ln(h.mean(1), sd, p0 + "fc_norm", 1e-6))


def text_reference(ids, mask, sd):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=sd["text.transformer.embeddings.word_embeddings.weight"].shape[0],
                                hidden_size=H, num_hidden_layers=1, num_attention_heads=1, intermediate_size=INTER,
                                max_position_embeddings=300), add_pooling_layer=False).eval()
    bert.load_state_dict({k[len("text.transformer."):]: v for k, v in sd.items() if k.startswith("text.transformer.")})
    cls = bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    return F.linear(F.gelu(F.linear(cls, sd["text.proj.0.weight"])), sd["text.proj.2.weight"])


# -- tests ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,make,reference", [("vivit", vivit_state, vivit_reference),
                                                 ("videomae2", videomae2_state, videomae2_reference)])
def test_their_layout_embeds_as_their_architecture(tmp_path, kind, make, reference):
    torch.manual_seed(0)
    sd = make()
    model = load_authors_checkpoint(write_checkpoint(tmp_path / f"checkpoint_{kind}.pt", sd, kind))
    assert model.visual.kind == kind and model.num_frames == (FRAMES if kind == "vivit" else 16)
    x = torch.randn(2, model.num_frames, 3, 224, 224)
    with torch.no_grad():
        ours, ref = model.encode_video(x, normalize=False), reference(x, sd)
        assert torch.allclose(ours, ref, atol=1e-4), (ours - ref).abs().max()
        ids = torch.tensor([[2, 17, 33, 3, 0], [2, 5, 3, 0, 0]])
        mask = (ids > 0).long()
        assert torch.allclose(model.encode_text(ids, mask, normalize=False), text_reference(ids, mask, sd), atol=1e-5)
    assert math.isclose(float(model.scale().detach()), 1 / 0.07, rel_tol=1e-5)


@pytest.mark.parametrize("make", [vivit_state, videomae2_state])
def test_saving_in_their_layout_round_trips(tmp_path, make):
    torch.manual_seed(1)
    sd = make()
    first = load_authors_checkpoint(write_checkpoint(tmp_path / "theirs.pt", sd, "x"))
    save_authors_checkpoint(first, tmp_path / "ours.pt")
    again = load_authors_checkpoint(tmp_path / "ours.pt")
    saved = torch.load(tmp_path / "ours.pt", weights_only=True)["state_dict"]
    assert set(saved) == {f"module.{k}" for k in sd}  # exactly their key names and nesting
    x = torch.randn(1, first.num_frames, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(first.encode_video(x), again.encode_video(x))


def test_a_partial_or_foreign_checkpoint_is_refused_by_name(tmp_path):
    torch.manual_seed(2)
    sd = vivit_state()
    missing = {k: v for k, v in sd.items() if k != "visual.model.encoder.layer.1.output.dense.bias"}
    with pytest.raises(AuthorsCheckpointError, match=r"partial load: 1 missing key\(s\) \['visual\.model\.layers\.1"
                                                     r"\.mlp\.fc2\.bias'\], 0 unexpected"):
        load_authors_checkpoint(write_checkpoint(tmp_path / "a.pt", missing, "x"))
    extra = {**sd, "visual.model.extra_head.weight": torch.zeros(2)}
    with pytest.raises(AuthorsCheckpointError, match=r"0 missing key\(s\) \[\], 1 unexpected key\(s\) "
                                                     r"\['visual\.model\.extra_head\.weight'\]"):
        load_authors_checkpoint(write_checkpoint(tmp_path / "b.pt", extra, "x"))
    torch.save({"state_dict": {"video_encoder.proj.weight": torch.zeros(1)}}, tmp_path / "c.pt")
    with pytest.raises(AuthorsCheckpointError, match="not the authors' layout"):
        load_authors_checkpoint(tmp_path / "c.pt")
    (tmp_path / "d.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DamagedCheckpointError, match="damaged checkpoint: it cannot be read"):
        load_authors_checkpoint(tmp_path / "d.pt")
    odd = {**sd, "visual.model.embeddings.position_embeddings": _rand(1, 1 + 100, H)}
    with pytest.raises(AuthorsCheckpointError, match="101 position embeddings do not fit 224 px"):
        load_authors_checkpoint(write_checkpoint(tmp_path / "e.pt", odd, "x"))


def test_compile_and_ddp_prefixes_and_position_ids_are_tolerated(tmp_path):
    torch.manual_seed(3)
    sd = vivit_state()
    odd = {(f"_orig_mod.{k}" if k.startswith("visual") else k): v for k, v in sd.items()}
    odd["text.transformer.embeddings.position_ids"] = torch.arange(300)[None]
    a = load_authors_checkpoint(write_checkpoint(tmp_path / "a.pt", odd, "x"))
    b = load_authors_checkpoint(write_checkpoint(tmp_path / "b.pt", sd, "x"))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in b.state_dict())


def test_their_preprocessing_takes_the_first_2T_frames_at_stride_2(tmp_path):
    from echolib.io.video import write_video

    frames = np.stack([np.full((64, 64, 3), 10 * k, np.uint8) for k in range(12)])  # frame k has value 10k
    path = write_video(tmp_path / "c.mp4", frames, fps=30.0, lossless=True)
    x = clip_input(path, 8)  # 8 frames: 0, 2, ..., 10, then the last frame on that grid (10) repeated
    assert x.shape == (8, 3, 224, 224)
    raw = (x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255
    got = raw.mean(dim=(1, 2, 3)).round().tolist()
    assert got == [0, 20, 40, 60, 80, 100, 100, 100]


def _their_reference(frames: np.ndarray, s: int = 224) -> np.ndarray:
    """Their preprocessing written out from their code (VivitImageProcessor with their arguments): the short side to
    s with PIL bilinear (the long side int(s * long / short)), a centre crop at ((H - s) // 2, (W - s) // 2),
    / 255, their mean and std; (T, 3, s, s)."""
    from PIL import Image

    out = []
    for f in frames:
        h, w = f.shape[:2]
        nh, nw = (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
        im = np.asarray(Image.fromarray(f).resize((nw, nh), Image.BILINEAR)).astype(np.float64)
        top, left = (nh - s) // 2, (nw - s) // 2
        im = im[top:top + s, left:left + s] / 255
        out.append(((im - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("shape", [(300, 400), (480, 270), (224, 224), (100, 100)])
def test_their_preprocessing_of_any_clip_shape_matches_their_code(shape, tmp_path):
    """Non-square DICOM-like frames keep their aspect ratio (short side to 224, centre crop), as their loader
    does: not squeezed to a square."""
    from echolib.io.video import read_clip, write_video
    from echolib.models.authors import their_frames

    rng = np.random.default_rng(0)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([(xx * 255 // w), (yy * 255 // h), rng.integers(0, 256, (h, w))], -1)
                       for _ in range(3)]).astype(np.uint8)
    got = their_frames(frames).numpy()
    assert got.shape == (3, 3, 224, 224)
    assert np.abs(got - _their_reference(frames)).max() < 1e-4
    if h != w:  # a square squeeze (what was done before) is far from it
        from PIL import Image
        squeezed = np.stack([np.asarray(Image.fromarray(f).resize((224, 224), Image.BILINEAR)) for f in frames])
        assert np.abs(got - _their_reference(squeezed)).max() > 1.0
    path = write_video(tmp_path / "c.mp4", frames[:, : h // 2 * 2, : w // 2 * 2], fps=30.0, lossless=True)
    x = clip_input(path, 2)
    native = read_clip(path, 2, stride=2)
    assert native.shape[1:3] == (h // 2 * 2, w // 2 * 2)
    assert torch.allclose(x, torch.from_numpy(_their_reference(native)).float(), atol=1e-4)


@pytest.mark.slow
def test_retrieve_scores_an_authors_checkpoint(tiny_project, tmp_path, monkeypatch, capsys):
    """`python -m echolib.retrieve --model checkpoint_vivit-scratch.pt --tokenizer DIR`: their preprocessing, all
    five views, ranked candidates; without --tokenizer one line says what is needed."""
    from echolib import views
    from echolib.retrieve import main
    from echolib.text import load_tokenizer

    root = tiny_project
    tok_dir = root / "data" / "tokenizer"
    torch.manual_seed(4)
    ck = write_checkpoint(tmp_path / "checkpoint_vivit-scratch.pt", vivit_state(len(load_tokenizer(tok_dir))),
                          "vivit-scratch")
    raw = root / "data" / "raw"
    vids = pl.read_parquet(raw / "videos.parquet")
    monkeypatch.setattr(views, "predict", lambda model_dir, data, videos, **kw: videos.select("video_id").with_columns(
        pred_view=pl.lit("4CH"), view_prob=pl.lit(0.99), decode_error=pl.lit("")))
    fake_views = tmp_path / "views"  # its predictions are the monkeypatched ones above
    study = tmp_path / "study"
    study.mkdir()
    sid = vids["study_id"][0]
    for p in vids.filter(pl.col("study_id") == sid)["path"]:
        shutil.copy(raw / p, study)
    main(["--model", str(ck), "--tokenizer", str(tok_dir), "--study", str(study), "--reports",
          str(raw / "studies.parquet"), "-k", "3", "--views-model", str(fake_views)])
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x[:2] in ("1.", "2.", "3.")]
    assert [x[:2] for x in lines] == ["1.", "2.", "3."]
    assert f"views: the view classifier in {fake_views}: " in out and "at p >= 0.9" in out
    with pytest.raises(SystemExit, match="an authors' checkpoint needs --tokenizer DIR"):
        main(["--model", str(ck), "--study", str(study), "--reports", str(raw / "studies.parquet")])
    # a fresh checkout has no view classifier: one line that names the ways on, and each of them works
    monkeypatch.undo()
    base = ["--model", str(ck), "--tokenizer", str(tok_dir), "--study", str(study), "--reports",
            str(raw / "studies.parquet"), "-k", "2", "--views-model", str(tmp_path / "none")]
    with pytest.raises(SystemExit, match=r"no view classifier in .*none \(.*--view-source all \| labels:FILE.csv\)"):
        main(base)
    n = len(list(study.iterdir()))
    main([*base, "--view-source", "all"])
    out = capsys.readouterr().out
    assert f"views: all {n} clips, no view filter (--view-source all)" in out and "\n2. " in out
    clips = sorted(p.name for p in study.iterdir())
    (tmp_path / "labels.csv").write_text("clip,view\n" + f"{clips[0]},4ch\n" + "".join(f"{c},OTHER\n" for c in clips[1:-1]))
    main([*base, "--view-source", f"labels:{tmp_path / 'labels.csv'}"])
    out = capsys.readouterr().out
    assert f"views: labels from labels.csv: 1 of {n} clips" in out and f"skipped clip {Path(clips[-1]).stem}: no label" in out
    with pytest.raises(SystemExit, match="use classifier, all or labels:FILE.csv"):
        main([*base, "--view-source", "guess"])


def test_the_evaluate_stage_scores_an_authors_checkpoint_as_a_run(tiny_project, tmp_path):
    """A run `encoder: authors, init: local:checkpoint.pt`: nothing is trained, model.pt points to the file, and
    evaluate ranks the test studies from the archive's own video files with their preprocessing; the ranks equal
    those computed here clip by clip (their clip_input, mean of each study's clips, cosine to each report)."""
    import yaml

    from echolib.evaluate import evaluate_run
    from echolib.text import load_tokenizer
    from echolib.train import train_run

    tok_dir = tiny_project / "data" / "tokenizer"
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(5)
    ck = write_checkpoint(tmp_path / "checkpoint_videomae2.pt", videomae2_state(len(tok)), "videomae2")
    d = _authors_project(tiny_project, tmp_path, "Authors", ck)
    s = train_run("Authors", 0, d / "params.yaml")
    assert s["global_steps"] == 0 and s["video_tower"] == "videomae2"
    res = evaluate_run(d / "data" / "runs" / "Authors", d / "data" / "cache", d / "data" / "split" / "studies.parquet",
                       tmp_path / "eval", None, n_boot=20, probe_studies=0, raw_dir=d / "data" / "raw")
    ranks = pl.read_parquet(tmp_path / "eval" / "Authors" / "seed0" / "ranks.parquet")
    want = _ranks_by_hand(ck, d, ranks["study_id"].to_list(), tok)
    assert ranks["rank_v2r"].to_list() == want.tolist()
    assert res["variants"]["Authors"]["study"]["mcmrr_v2r"] == pytest.approx(want.float().mean().item())
    assert yaml.safe_load((d / "params.yaml").read_text())["runs"]["Authors"]["encoder"] == "authors"


def test_an_authors_run_with_steps_fine_tunes_their_model_and_evaluate_scores_the_result(tiny_project, tmp_path):
    """`encoder: authors` with `steps: 2` trains: their model on the archive's training clips (their preprocessing,
    their tokenizer), written back in their layout (same keys, other weights); model.pt points to that file and
    evaluate's ranks equal the ones computed clip by clip from it."""

    from echolib.evaluate import evaluate_run
    from echolib.text import load_tokenizer
    from echolib.train import train_run

    tok_dir = tiny_project / "data" / "tokenizer"
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(6)
    ck = write_checkpoint(tmp_path / "checkpoint_videomae2.pt", videomae2_state(len(tok)), "videomae2")
    d = _authors_project(tiny_project, tmp_path, "Tuned", ck, budget="steps", steps=2, batch_size=2, lr=1e-3)
    # trained into a staging folder and moved into place afterwards, as the stage runner does
    s = train_run("Tuned", 0, d / "params.yaml", out_root=tmp_path / "staging")
    (d / "data" / "runs").mkdir()
    shutil.move(tmp_path / "staging" / "Tuned", d / "data" / "runs" / "Tuned")
    split = pl.read_parquet(d / "data" / "split" / "studies.parquet")
    index = pl.read_parquet(d / "data" / "cache" / "index.parquet")
    n_train = index.filter(pl.col("study_id").is_in(split.filter(pl.col("split") == "train")["study_id"].to_list())
                           & (pl.col("pred_view") == "4CH")).height
    assert s["global_steps"] == 2 and s["train_clips"] == n_train and s["batch_size"] == 2
    tuned = d / "data" / "runs" / "Tuned" / "seed0" / "checkpoint_finetuned.pt"
    assert torch.load(d / "data" / "runs" / "Tuned" / "seed0" / "model.pt")["authors_checkpoint"] == tuned.name
    from echolib.weights import verify

    assert verify(d / "data" / "runs" / "Tuned" / "seed0" / "model.pt")["layout"] == "authors-videomae2"
    before = torch.load(ck)["state_dict"]
    after = torch.load(tuned, weights_only=True)["state_dict"]
    assert set(after) == set(before)  # their layout, key for key
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "module.visual.model.model.head.weight" in changed and "module.text.proj.2.weight" in changed
    evaluate_run(d / "data" / "runs" / "Tuned", d / "data" / "cache", d / "data" / "split" / "studies.parquet",
                 tmp_path / "eval", None, n_boot=20, probe_studies=0, raw_dir=d / "data" / "raw")
    ranks = pl.read_parquet(tmp_path / "eval" / "Tuned" / "seed0" / "ranks.parquet")
    assert ranks["rank_v2r"].to_list() == _ranks_by_hand(tuned, d, ranks["study_id"].to_list(), tok).tolist()


def _authors_project(tiny_project, tmp_path, run: str, ck, **run_keys):
    """A project whose only run is `encoder: authors` from checkpoint `ck` on 4CH clips (`run_keys` on top), with
    tiny_project's data and its tokenizer standing in for theirs."""
    from conftest import make_project, tiny_params

    params = tiny_params(views={"source": "label"},
                         text={"pretrained_dir": str(tiny_project / "data" / "tokenizer")})
    params["train"].update(warmup_steps=1)
    params["runs"] = {run: {**params["runs"]["SingleVideo"], "encoder": "authors", "init": f"local:{ck}",
                            "views": ["4CH"], "seeds": [0], "exposure_of": run, **run_keys}}
    params["fig2"]["runs"] = []
    d = make_project(tmp_path / "proj", params)
    (d / "data").mkdir()
    for part in ("raw", "cache", "split", "tokenizer"):
        (d / "data" / part).symlink_to(tiny_project / "data" / part)
    return d


def _ranks_by_hand(ck, d, studies, tok):
    """Video -> report ranks of checkpoint `ck` on `studies` of project `d`, clip by clip with their clip_input, the
    mean of each study's 4CH clips, cosine to each report embedded with their tokenizer."""
    from echolib.interpret import embed_sentences
    from echolib.models.authors import AUTHORS_MAX_LENGTH

    model = load_authors_checkpoint(ck)
    raw = d / "data" / "raw"
    index = pl.read_parquet(d / "data" / "cache" / "index.parquet")
    clips = index.filter(pl.col("study_id").is_in(studies) & (pl.col("pred_view") == "4CH"))
    path = dict(pl.read_parquet(raw / "videos.parquet").select("video_id", "path").iter_rows())
    with torch.no_grad():
        emb = {s: [] for s in studies}
        for v, sid in clips.select("video_id", "study_id").iter_rows():
            emb[sid].append(model.encode_video(clip_input(raw / path[v], model.num_frames).unsqueeze(0))[0])
        video = torch.nn.functional.normalize(torch.stack([torch.stack(emb[s]).mean(0) for s in studies]), dim=-1)
        reports = dict(pl.read_parquet(raw / "studies.parquet").select("study_id", "report").iter_rows())
        text = embed_sentences(model, tok, [reports[s] for s in studies], AUTHORS_MAX_LENGTH)
    sims = video @ text.T
    return (sims >= sims.diag().unsqueeze(1)).sum(1)


def test_weights_verify_names_layout_hash_parameters_licence_and_runs_a_fixed_input(tmp_path, capsys):
    """`python -m echolib.weights verify PATH` on self-made files in the real layouts; a file that would run code
    and a file of unknown keys are one-line errors."""
    import hashlib

    from echolib.weights import main

    ck = write_checkpoint(tmp_path / "checkpoint_videomae2.pt", videomae2_state(), "videomae2")
    assert main(["verify", str(ck)]) == 0
    out = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    assert out["layout"].strip() == "authors-videomae2"
    assert out["sha256"].strip() == hashlib.sha256(ck.read_bytes()).hexdigest()
    n = sum(p.numel() for p in load_authors_checkpoint(ck).parameters())
    assert out["parameters"].strip() == f"{n:,}" and "CC-BY-NC-4.0" in out["licence"]
    assert f"-> (1, {EMBED})" in out["check"] and "all finite" in out["check"]
    # a folder holding the file is read the same way
    assert main(["verify", str(tmp_path)]) == 0 and "authors-videomae2" in capsys.readouterr().out

    class Boom:
        def __reduce__(self):
            return (print, ("ran code",))

    torch.save({"state_dict": Boom()}, tmp_path / "bad.pt")
    assert main(["verify", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr()
    assert "ran code" not in err.out and err.err.startswith("error: ") and len(err.err.strip().splitlines()) == 1
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "odd.pt")
    assert main(["verify", str(tmp_path / "odd.pt")]) == 2
    assert "match no known layout" in capsys.readouterr().err
