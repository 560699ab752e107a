"""Local pretrained weights in the real on-disk layouts (echolib.models.pretrained, the Japanese BERT folder) and
self-supervised pretraining (echolib.pretrain). Every checkpoint is written here, small and random, with the real
key names and nesting; what each key must become is spelled out by hand, not by the loader's own tables."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from echolib.models import create_image_encoder, create_text_encoder, create_video_encoder
from echolib.models.pretrained import WeightsError, interpolate_positions, load_weights

D, LAYERS = 128, 3  # the tiny ViT sizes (echolib.models.video.SIZES["tiny"])


def _rand(*shape):
    return torch.randn(*shape)


def _timm_convnext(num_classes: int):
    import timm

    torch.manual_seed(1)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=num_classes)


def test_timm_convnext_in21k_loads_into_the_image_and_video_convnexts(tmp_path):
    """timm's ImageNet-21k layout (head.fc a 21,841-class classifier): the backbone loads exactly, the classifier
    is dropped by name; the video ConvNeXt takes the same backbone, its temporal layers left as the identity."""
    from safetensors.torch import save_file

    src = _timm_convnext(21841)
    save_file(src.state_dict(), str(tmp_path / "model.safetensors"))
    img = create_image_encoder("convnext")
    rep = load_weights(img, tmp_path)  # a folder as the hub stores it
    assert rep["layout"] == "timm-convnext" and rep["dropped"] == {"the classifier": 2}
    for k, v in img.backbone.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    vid = create_video_encoder("convnext_st")
    load_weights(vid, tmp_path / "model.safetensors")
    assert all(float(m.pw.weight.abs().sum()) == 0 for m in vid.stem_mix)  # temporal layers: still the identity
    vid.eval(), img.eval()
    frame = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # a still clip through the video model = the frame through the image model
        torch.testing.assert_close(vid.backbone(frame), img.backbone(frame))


def test_open_clip_convnext_and_echoclip_keep_the_trunk_and_drop_the_rest(tmp_path):
    """open_clip's TimmModel layout (LAION-2B ConvNeXt; EchoCLIP's image tower, saved as
    open_clip_pytorch_model.bin): `visual.trunk.*` is the backbone; `visual.head.proj`, the text transformer,
    token embedding, positional embedding, ln_final, text_projection and logit_scale are dropped by name."""
    trunk = _timm_convnext(0).state_dict()
    state = {f"visual.trunk.{k}": v for k, v in trunk.items()}
    state.update({"visual.head.proj.weight": _rand(512, 320), "positional_embedding": _rand(77, 64),
                  "text_projection": _rand(64, 512), "logit_scale": torch.tensor(4.6),
                  "token_embedding.weight": _rand(100, 64), "ln_final.weight": _rand(64), "ln_final.bias": _rand(64),
                  "transformer.resblocks.0.attn.in_proj_weight": _rand(192, 64),
                  "transformer.resblocks.0.attn.in_proj_bias": _rand(192)})
    folder = tmp_path / "echo-clip"
    folder.mkdir()
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    img = create_image_encoder("convnext")
    rep = load_weights(img, folder)
    assert rep["layout"] == "open_clip-convnext"
    assert rep["dropped"] == {"the CLIP projection": 1, "the text tower and logit scale": 8}
    for k, v in img.backbone.state_dict().items():
        assert torch.equal(v, trunk[k]), k


def _videomae_config(**kw):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(num_frames=16, image_size=64, patch_size=16, tubelet_size=2, hidden_size=D,
                          num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=512,
                          decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                          decoder_intermediate_size=128, **kw)


@pytest.mark.parametrize("cls", ["VideoMAEForPreTraining", "VideoMAEModel"])
def test_transformers_videomae_save_pretrained_loads(tmp_path, cls):
    """save_pretrained of VideoMAEForPreTraining (`videomae.*`, decoder, mask token; no final norm with mean
    pooling) or VideoMAEModel: the encoder's tensors land where they were; the decoder is dropped by name."""
    import transformers

    torch.manual_seed(0)
    pooled = cls == "VideoMAEForPreTraining"
    src = getattr(transformers, cls)(_videomae_config(use_mean_pooling=pooled))
    src.save_pretrained(tmp_path)
    enc = create_video_encoder("videomae")
    rep = load_weights(enc, tmp_path)
    assert rep["layout"] == "videomae"
    inner = src.videomae.state_dict() if pooled else src.state_dict()
    for k, v in inner.items():
        assert torch.equal(enc.backbone.state_dict()[k], v), k
    if pooled:
        assert set(rep["dropped"]) == {"the pretraining decoder", "the pretraining mask token"}
        assert rep["fresh"] == 2  # layernorm.weight / .bias: a pretraining checkpoint has no final norm
    else:
        assert rep["dropped"] == {} and rep["fresh"] == 0


def test_videomae_v2_original_layout_is_renamed_and_qkv_split(tmp_path):
    """VideoMAE v2's own layout ({"module": ...} of a fine-tuned model: fused qkv with q_bias and v_bias, norm,
    fc_norm, head), written key by key: query/key/value are the three thirds of qkv, the key has no bias."""
    torch.manual_seed(0)
    state = {"patch_embed.proj.weight": _rand(D, 3, 2, 16, 16), "patch_embed.proj.bias": _rand(D),
             "norm.weight": _rand(D), "norm.bias": _rand(D), "fc_norm.weight": _rand(D), "fc_norm.bias": _rand(D),
             "head.weight": _rand(400, D), "head.bias": _rand(400)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": _rand(D), b + "norm1.bias": _rand(D), b + "attn.qkv.weight": _rand(3 * D, D),
                      b + "attn.q_bias": _rand(D), b + "attn.v_bias": _rand(D), b + "attn.proj.weight": _rand(D, D),
                      b + "attn.proj.bias": _rand(D), b + "norm2.weight": _rand(D), b + "norm2.bias": _rand(D),
                      b + "mlp.fc1.weight": _rand(512, D), b + "mlp.fc1.bias": _rand(512),
                      b + "mlp.fc2.weight": _rand(D, 512), b + "mlp.fc2.bias": _rand(D)})
    torch.save({"module": state, "epoch": 10}, tmp_path / "vit_t_k710_ft.pth")
    enc = create_video_encoder("videomae")
    rep = load_weights(enc, tmp_path / "vit_t_k710_ft.pth")
    assert rep["layout"] == "videomae2" and rep["fresh"] == 0
    assert rep["dropped"] == {"the classifier's pooling norm": 2, "the classifier": 2}
    got = enc.backbone.state_dict()
    for i in range(LAYERS):
        att, qkv = f"encoder.layer.{i}.attention.attention.", state[f"blocks.{i}.attn.qkv.weight"]
        assert torch.equal(got[att + "query.weight"], qkv[:D])
        assert torch.equal(got[att + "key.weight"], qkv[D:2 * D])
        assert torch.equal(got[att + "value.weight"], qkv[2 * D:])
        assert torch.equal(got[att + "query.bias"], state[f"blocks.{i}.attn.q_bias"])
        assert torch.equal(got[att + "value.bias"], state[f"blocks.{i}.attn.v_bias"])
        assert torch.equal(got[f"encoder.layer.{i}.intermediate.dense.weight"], state[f"blocks.{i}.mlp.fc1.weight"])
        assert torch.equal(got[f"encoder.layer.{i}.layernorm_after.bias"], state[f"blocks.{i}.norm2.bias"])
    assert torch.equal(got["layernorm.weight"], state["norm.weight"])
    assert torch.equal(got["embeddings.patch_embeddings.projection.weight"], state["patch_embed.proj.weight"])
    # its pretraining checkpoint: {"model": {"encoder.*", "decoder.*", "encoder_to_decoder.*", "mask_token"}}
    pre = {f"encoder.{k}": v for k, v in state.items() if not k.startswith(("fc_norm", "head"))}
    pre.update({"decoder.blocks.0.norm1.weight": _rand(64), "decoder.head.weight": _rand(1536, 64),
                "encoder_to_decoder.weight": _rand(64, D), "mask_token": _rand(1, 1, 64)})
    torch.save({"model": pre}, tmp_path / "pretrain.pth")
    rep = load_weights(create_video_encoder("videomae"), tmp_path / "pretrain.pth")
    assert rep["dropped"] == {"the pretraining decoder": 3, "the pretraining mask token": 1}


def _vivit_k400_state(frames: int, image: int) -> dict:
    """VivitForVideoClassification as the hub stores google/vivit-b-16x2-kinetics400 (transformers 4.x names),
    at tiny width: `vivit.` prefix, 400-class classifier."""
    n = (frames // 2) * (image // 16) ** 2
    s = {"vivit.embeddings.cls_token": _rand(1, 1, D), "vivit.embeddings.position_embeddings": _rand(1, 1 + n, D),
         "vivit.embeddings.patch_embeddings.projection.weight": _rand(D, 3, 2, 16, 16),
         "vivit.embeddings.patch_embeddings.projection.bias": _rand(D),
         "vivit.layernorm.weight": _rand(D), "vivit.layernorm.bias": _rand(D),
         "classifier.weight": _rand(400, D), "classifier.bias": _rand(400)}
    for i in range(LAYERS):
        b = f"vivit.encoder.layer.{i}."
        for name, shape in (("attention.attention.query", (D, D)), ("attention.attention.key", (D, D)),
                            ("attention.attention.value", (D, D)), ("attention.output.dense", (D, D)),
                            ("intermediate.dense", (512, D)), ("output.dense", (D, 512))):
            s[b + name + ".weight"], s[b + name + ".bias"] = _rand(*shape), _rand(shape[0])
        for ln in ("layernorm_before", "layernorm_after"):
            s[b + ln + ".weight"], s[b + ln + ".bias"] = _rand(D), _rand(D)
    return s


def test_vivit_kinetics_loads_with_renames_and_interpolated_positions(tmp_path):
    """A 32-frame checkpoint (16 x 4 x 4 tokens) into the 16-frame tiny ViViT (8 x 4 x 4): the 4.x attention
    names become q/k/v/o projections, the classifier is dropped, and the position embeddings are resampled in
    time: embeddings that vary only over space come out unchanged (hand-computed), the CLS position is kept."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = _vivit_k400_state(32, 64)
    spatial = _rand(1, 1, 16, D).expand(1, 16, 16, D).reshape(1, 256, D)  # the same at every time step
    state["vivit.embeddings.position_embeddings"] = torch.cat([state["vivit.embeddings.position_embeddings"][:, :1],
                                                               spatial], 1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"num_frames": 32, "image_size": 64,
                                                      "tubelet_size": [2, 16, 16]}))
    enc = create_video_encoder("vivit")
    rep = load_weights(enc, tmp_path)
    assert rep["layout"] == "vivit" and rep["dropped"] == {"the classifier": 2}
    assert rep["position_embeddings_resized"] == [[1, 257, D], [1, 129, D]]
    got = enc.backbone.state_dict()
    assert torch.equal(got["layers.1.attention.q_proj.weight"], state["vivit.encoder.layer.1.attention.attention.query.weight"])
    assert torch.equal(got["layers.2.attention.o_proj.bias"], state["vivit.encoder.layer.2.attention.output.dense.bias"])
    assert torch.equal(got["layers.0.mlp.fc2.weight"], state["vivit.encoder.layer.0.output.dense.weight"])
    pos = got["embeddings.position_embeddings"]
    torch.testing.assert_close(pos[:, 0], state["vivit.embeddings.position_embeddings"][:, 0])
    torch.testing.assert_close(pos[:, 1:].reshape(8, 16, D), spatial.reshape(16, 16, D)[:8])
    # without config.json the grid is inferred when space matches the model's (here it does)
    (tmp_path / "config.json").unlink()
    assert load_weights(create_video_encoder("vivit"), tmp_path)["position_embeddings_resized"]


def test_position_grid_that_cannot_be_told_stops_with_a_clear_message():
    with pytest.raises(WeightsError, match="do not form a token grid .* config.json"):
        interpolate_positions(torch.zeros(1, 1 + 7 * 9 * 11, 4), (8, 4, 4), None, "w.pt")
    same = torch.randn(1, 1 + 128, 4)
    assert interpolate_positions(same, (8, 4, 4), (8, 4, 4), "w.pt") is same


def test_partial_or_mismatched_loads_are_refused(tmp_path):
    """Another ConvNeXt size, a file with a key missing, and keys of nothing known: one message each, naming
    the file and the keys, and the encoder left as it was."""
    import timm
    from safetensors.torch import save_file

    enc = create_image_encoder("convnext")
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    save_file(timm.create_model("convnext_femto", num_classes=0).state_dict(), str(tmp_path / "femto.safetensors"))
    with pytest.raises(WeightsError, match=r"femto.safetensors: timm-convnext weights do not fit .* of other shape"):
        load_weights(enc, tmp_path / "femto.safetensors")
    sd = _timm_convnext(0).state_dict()
    sd.pop("stages.3.blocks.1.mlp.fc2.weight")
    save_file(sd, str(tmp_path / "cut.safetensors"))
    with pytest.raises(WeightsError, match=r"1 missing, e.g. \['backbone.stages.3.blocks.1.mlp.fc2.weight'\].*"
                                           "Refusing a partial load"):
        load_weights(enc, tmp_path / "cut.safetensors")
    torch.save({"state_dict": {"foo.weight": torch.zeros(1)}}, tmp_path / "foo.ckpt")
    with pytest.raises(WeightsError, match="match no known layout"):
        load_weights(enc, tmp_path / "foo.ckpt")
    (tmp_path / "two").mkdir()
    for n in ("a.pt", "b.pt"):
        torch.save({}, tmp_path / "two" / n)
    with pytest.raises(FileNotFoundError, match=r"no weights file in this folder .* found \['a.pt', 'b.pt'\]"):
        load_weights(enc, tmp_path / "two")
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())


def test_japanese_bert_pretraining_folder_loads_and_a_misfit_is_refused(tmp_path):
    """bert-base-japanese-v3 is a BertForPreTraining folder (`bert.*`, `cls.*` heads): the encoder's weights
    are the file's `bert.*`; a config that does not fit the weights is refused instead of half-loaded."""
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
    src = BertForPreTraining(cfg)
    src.save_pretrained(tmp_path / "bert")
    txt = create_text_encoder("bert", pretrained_dir=tmp_path / "bert", embed_dim=32)
    want = src.bert.state_dict()
    for k, v in txt.backbone.state_dict().items():
        assert torch.equal(v, want[k]), k
    cfg2 = json.loads((tmp_path / "bert" / "config.json").read_text())
    cfg2["num_hidden_layers"] = 3
    (tmp_path / "bert" / "config.json").write_text(json.dumps(cfg2))
    with pytest.raises(ValueError, match="do not fit its config.json .* refusing a partial load"):
        create_text_encoder("bert", pretrained_dir=tmp_path / "bert", embed_dim=32)


def test_pretraining_sees_only_training_patients_and_its_weights_load(tiny_project, tmp_path):
    """Nested patient subsets of the training split only; the written encoder loads back exactly (init: local)
    and the image model's weights load into the video ConvNeXt's backbone."""
    from echolib import config as C
    from echolib.pretrain import pretrain_encoder, pretrain_patients, pretrain_rows
    from echolib.store import open_store

    store = open_store(tiny_project / "data" / "cache")
    index = store.index
    train_patients = set(index.filter(pl.col("split") == "train")["patient_id"])
    small, big = pretrain_patients(index, 0.3, 0), pretrain_patients(index, 1.0, 0)
    assert set(small) < set(big) == train_patients
    assert set(index[pretrain_rows(index, 1.0, 0)]["split"]) == {"train"}
    cfg = C.PretrainConfig.from_dict(dict(steps=2, batch_size=4, lr=1e-3, temperature=0.1, mask_ratio=0.9))
    for name in ("convnext_st", "convnext"):
        s = pretrain_encoder(name, "tiny", tiny_project / "data" / "cache", tmp_path / name, 1.0, cfg)
        assert s["splits_seen"] == ["train"] and s["patients"] == len(train_patients) and np.isfinite(s["final_loss"])
        assert (tmp_path / name / "dvclive" / "plots" / "metrics" / "pretrain" / "loss.tsv").is_file()
    saved = torch.load(tmp_path / "convnext_st" / "encoder.pt", weights_only=True)["echolib_init"]
    enc = create_video_encoder("convnext_st")
    assert load_weights(enc, tmp_path / "convnext_st" / "encoder.pt")["layout"] == "echolib-ssl"
    assert all(torch.equal(v, saved[k]) for k, v in enc.state_dict().items())
    img = torch.load(tmp_path / "convnext" / "encoder.pt", weights_only=True)["echolib_init"]
    vid = create_video_encoder("convnext_st")
    load_weights(vid, tmp_path / "convnext" / "encoder.pt")
    assert all(torch.equal(v, img["backbone." + k]) for k, v in vid.backbone.state_dict().items())
    with pytest.raises(WeightsError, match="timm-convnext weights do not fit this VideoEncoder .* Refusing"):
        load_weights(create_video_encoder("vivit"), tmp_path / "convnext" / "encoder.pt")


def test_masked_video_pretraining_hides_tubes_and_trains_the_runs_own_backbone():
    """VideoMAE tube masking: 90 % of the spatial patches hidden, the same ones at every time step; one step
    changes the weights of the encoder the run will use (not a copy)."""
    from echolib.pretrain import MaskedVideo

    torch.manual_seed(0)
    enc = create_video_encoder("videomae")
    mae = MaskedVideo(enc, 0.9)
    mask = mae.tube_mask(3, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 8 * 16)
    per_time = mask.view(3, 8, 16)
    assert (per_time == per_time[:, :1]).all() and (per_time[:, 0].sum(1) == round(0.9 * 16)).all()
    before = enc.backbone.embeddings.patch_embeddings.projection.weight.clone()
    opt = torch.optim.AdamW(mae.parameters(), lr=1e-3)
    loss = mae(torch.randn(2, 16, 3, 64, 64), torch.Generator().manual_seed(1))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, enc.backbone.embeddings.patch_embeddings.projection.weight)


def test_pretraining_curves_go_to_a_csv_where_dvclive_is_not_installed(tmp_path, monkeypatch, capsys):
    import sys

    from echolib.curves import CsvCurves, curves_logger

    monkeypatch.setitem(sys.modules, "dvclive", None)  # `import dvclive` raises ImportError
    live = curves_logger(tmp_path / "curves")
    assert isinstance(live, CsvCurves)
    assert capsys.readouterr().out == f"dvclive is not installed: curves go to {tmp_path / 'curves' / 'curves.csv'}\n"
    for loss in (2.5, 1.25):
        live.log_metric("pretrain/loss", loss)
        live.log_metric("pretrain/lr", 0.001)
        live.next_step()
    live.end()
    assert (tmp_path / "curves" / "curves.csv").read_text() == (
        "step,metric,value\n0,pretrain/loss,2.5\n0,pretrain/lr,0.001\n1,pretrain/loss,1.25\n1,pretrain/lr,0.001\n")


def test_pretrain_cli_writes_the_encoder_and_refuses_a_bad_fraction(tiny_project, tmp_path, capsys):
    from echolib.pretrain import main, pretrain_patients

    main(["--encoder", "convnext", "--fraction", "0.5", "--out", str(tmp_path / "ssl"),
          "--params", str(tiny_project / "params.yaml")])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    index = pl.read_parquet(tiny_project / "data" / "cache" / "index.parquet")
    assert (s["encoder"], s["store"], s["device"], s["steps"]) == ("convnext", "memmap", "cpu", 4)
    assert s["patients"] == len(pretrain_patients(index, 0.5, 0))
    assert load_weights(create_image_encoder("convnext"), tmp_path / "ssl" / "encoder.pt")["layout"] == "echolib-ssl"
    with pytest.raises(SystemExit, match=r"^error: --fraction must be in \(0, 1\], got 0.0$"):
        main(["--encoder", "convnext", "--fraction", "0", "--out", str(tmp_path / "x")])
