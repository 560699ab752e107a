import math

import pytest
import torch

from echolib.models import (
    EchoClip,
    create_image_encoder,
    create_text_encoder,
    create_video_encoder,
    list_encoders,
)
from echolib.models.pretrained import WeightsError, load_weights


def test_registry_lists_required_encoders():
    enc = list_encoders()
    assert {"vivit", "videomae", "convnext_early"} <= set(enc["video"]) and "convnext" in enc["image"] and "bert" in enc["text"]
    with pytest.raises(ValueError, match="unknown video encoder 'c3d'"):
        create_video_encoder("c3d")
    with pytest.raises(ValueError, match="unknown encoder size 'huge'"):
        create_video_encoder("vivit", size="huge")


@pytest.mark.parametrize("name", ["vivit", "videomae", "convnext_early"])
def test_video_encoders_shapes_and_frame_check(name):
    enc = create_video_encoder(name)
    assert enc(torch.rand(2, 16, 3, 64, 64)).shape == (2, 128)
    with pytest.raises(ValueError, match=r"expects \(B, 16, C, H, W\)"):
        enc(torch.rand(2, 8, 3, 64, 64))


def test_image_encoder_one_frame_in_training_mean_of_frames_at_inference():
    enc = create_image_encoder("convnext")
    x = torch.rand(2, 4, 3, 32, 32)
    enc.eval()
    with torch.no_grad():
        per_frame = torch.nn.functional.normalize(enc.embed_frames(x.flatten(0, 1)).view(2, 4, -1), dim=-1)
        torch.testing.assert_close(enc(x), per_frame.mean(1))
    enc.train()
    assert enc(x).shape == (2, 128)


def test_early_fusion_video_encoder_contains_the_image_encoder():
    """Stem weights equal to the image stem on frame k and zero elsewhere: the video model is the image model
    looking at frame k (so the SingleVideo run can do at least what SingleImage does)."""
    torch.manual_seed(0)
    img, vid = create_image_encoder("convnext"), create_video_encoder("convnext_early", num_frames=4)
    state = {k: v.clone() for k, v in img.backbone.state_dict().items()}
    stem = state["stem.0.weight"]  # (out, 3, 4, 4)
    k = 2
    state["stem.0.weight"] = torch.zeros(stem.shape[0], 12, *stem.shape[2:])
    state["stem.0.weight"][:, 3 * k:3 * k + 3] = stem
    vid.backbone.load_state_dict(state)
    vid.proj.load_state_dict(img.proj.state_dict())
    img.eval(), vid.eval()
    x = torch.rand(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vid(x), img.embed_frames(x[:, k]), rtol=1e-4, atol=1e-5)


def test_early_fusion_loads_image_weights_from_a_file(tmp_path):
    """An image checkpoint (3-channel stem) loads into the video model: on a still clip (every frame the same)
    the adapted video backbone computes exactly what the image backbone computes on that frame."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    img, vid = create_image_encoder("convnext"), create_video_encoder("convnext_early")
    save_file(img.backbone.state_dict(), str(tmp_path / "image.safetensors"))
    load_weights(vid, tmp_path / "image.safetensors")
    img.eval(), vid.eval()
    frame = torch.rand(2, 3, 32, 32)
    still = frame[:, None].expand(2, 16, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vid.backbone(still.flatten(1, 2)), img.backbone(frame), rtol=1e-4, atol=1e-5)


def test_echoclip_normalises_and_clamps_scale():
    clip = EchoClip(create_video_encoder("vivit"), create_text_encoder("bert", vocab_size=100))
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    v, t, s = clip(torch.rand(2, 16, 3, 64, 64), torch.randint(0, 100, (2, 10)), torch.ones(2, 10, dtype=torch.long))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        clip.logit_scale.fill_(10.0)
    assert clip.scale().item() == pytest.approx(100.0)


def test_weights_round_trip_and_errors(tmp_path):
    from safetensors.torch import save_file

    a, b = create_image_encoder("convnext"), create_image_encoder("convnext")
    save_file(a.backbone.state_dict(), str(tmp_path / "w.safetensors"))
    load_weights(b, tmp_path / "w.safetensors")
    for k, v in a.backbone.state_dict().items():
        torch.testing.assert_close(v, b.backbone.state_dict()[k])
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(b, tmp_path / "none.safetensors")
    torch.save({"junk.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="match no known layout"):
        load_weights(b, tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="not a local BERT directory"):
        create_text_encoder("bert", pretrained_dir=tmp_path)


def test_mean_pooled_text_embedding_ignores_padding():
    import torch

    from echolib.models import create_text_encoder

    torch.manual_seed(0)
    enc = create_text_encoder("bert", size="tiny", vocab_size=50, max_length=32).eval()
    assert enc.pool == "mean"
    ids = torch.randint(5, 50, (2, 10))
    mask = torch.ones_like(ids)
    padded_ids = torch.cat([ids, torch.zeros(2, 6, dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 6, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(enc(padded_ids, padded_mask), enc(ids, mask), atol=1e-5, rtol=1e-5)
        h = enc.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(enc(ids, mask), enc.proj(h.mean(1)))  # the mean of the token states


def test_convnext_st_is_the_image_model_on_a_still_clip_and_sees_frame_order():
    """At initialisation (temporal layers at zero) a still clip gives exactly the image model's embedding of its
    frame, and a clip reversed gives exactly the clip's embedding (neighbouring frames are averaged in pairs, which
    reversal keeps): without temporal mixing the encoder cannot tell the order of its frames. Once the temporal
    layers carry weights, reversing the frames changes the embedding."""
    torch.manual_seed(0)
    image, video = create_image_encoder("convnext"), create_video_encoder("convnext_st")
    video.backbone.load_state_dict(image.backbone.state_dict())
    video.proj.load_state_dict(image.proj.state_dict())
    image.eval(), video.eval()
    frame = torch.rand(2, 3, 64, 64)
    clip = torch.rand(2, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(video(frame[:, None].expand(2, 8, 3, 64, 64)), image.embed_frames(frame))
        torch.testing.assert_close(video(clip.flip(1)), video(clip), atol=1e-5, rtol=0)  # order unseen
        for p in video.parameters():  # weights such as training gives the temporal layers
            if p.ndim >= 1:
                p.add_(0.05 * torch.randn_like(p))
        base = video(clip)
        assert not torch.allclose(base, video(clip.flip(1)), atol=1e-4)
        assert torch.allclose(base, video(clip), atol=1e-6)


def _pulsing_pair(n: int, gen: torch.Generator, frames: int = 8, size: int = 32):
    """Two identical discs; one pulsates (radius r0 (1 + 0.35 sin(wt + phase))), the other keeps a radius drawn
    from the same distribution, so no single frame tells them apart. Label: 1 if the right disc pulsates."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    label = torch.randint(2, (n,), generator=gen)
    t = torch.arange(frames).float()
    phase = 2 * torch.pi * torch.rand(n, 1, generator=gen)
    still = 2 * torch.pi * torch.rand(n, 1, generator=gen)
    r_pulse = 5 * (1 + 0.35 * torch.sin(2 * torch.pi * t / frames + phase))  # (n, T)
    r_still = (5 * (1 + 0.35 * torch.sin(still))).expand(n, frames)
    right = torch.where(label[:, None] == 1, r_pulse, r_still)
    left = torch.where(label[:, None] == 1, r_still, r_pulse)
    d_left = ((xx - 9) ** 2 + (yy - 16) ** 2).float().sqrt()
    d_right = ((xx - 23) ** 2 + (yy - 16) ** 2).float().sqrt()
    img = ((d_left < left[..., None, None]) | (d_right < right[..., None, None])).float()  # (n, T, H, W)
    return (img[:, :, None].expand(n, frames, 3, size, size) - 0.5) / 0.25, label


def _ramp(n: int, gen: torch.Generator, frames: int = 8, size: int = 32):
    """A disc at a random place whose brightness rises over the clip (label 1) or falls (label 0): the same frames
    in the two orders, so only their order tells the labels apart."""
    label = torch.randint(2, (n,), generator=gen)
    level = 0.2 + 0.8 * torch.arange(frames).float() / (frames - 1)
    level = torch.where(label[:, None] == 1, level, level.flip(0))  # (n, T)
    cy, cx = (8 + 16 * torch.rand(n, 1, 1, generator=gen) for _ in range(2))
    r = 4 + 3 * torch.rand(n, 1, 1, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    disc = (((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() < r).float()
    img = disc[:, None] * level[..., None, None]
    return (img[:, :, None].expand(n, frames, 3, size, size) - 0.5) / 0.25, label


def _fit(encoder, steps: int = 120, batch: int = 32, toy=None) -> float:
    toy = toy or _pulsing_pair
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(encoder.proj.out_features, 2)
    opt = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=2e-3)
    encoder.train()
    for _ in range(steps):
        x, y = toy(batch, gen)
        loss = torch.nn.functional.cross_entropy(head(encoder(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.eval()
    x, y = toy(256, torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float((head(encoder(x)).argmax(1) == y).float().mean())


def test_several_frames_tell_which_disc_pulsates():
    """The video encoder learns which disc pulsates; the image model (one random frame per clip in training, the
    mean of every frame's embedding at inference) cannot: no single frame carries the answer. This needs several
    frames, not their order (averaging features over frames is enough: see the next test for order)."""
    video = _fit(create_video_encoder("convnext_st"))
    image = _fit(create_image_encoder("convnext"))
    assert video > 0.9, video
    assert image < 0.65, image


def test_only_the_order_of_frames_tells_brightening_from_dimming():
    """A disc brightening or dimming: the same frames in two orders. The image model's mean of frames and
    convnext_st with its temporal layers at the identity give a clip and its reversal exactly the same embedding
    (so no head can do better than chance); the full encoder, its temporal layers trained, learns it."""
    x, _ = _ramp(16, torch.Generator().manual_seed(1))
    frozen, image = create_video_encoder("convnext_st").eval(), create_image_encoder("convnext").eval()
    with torch.no_grad():
        torch.testing.assert_close(frozen(x.flip(1)), frozen(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(image(x.flip(1)), image(x), atol=1e-5, rtol=0)
    assert _fit(create_video_encoder("convnext_st"), toy=_ramp) > 0.9
