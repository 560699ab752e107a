"""One EchoClip from a run's settings (`build_model`) or from a trained run's model.pt (`load_clip_model`)."""

from __future__ import annotations

from pathlib import Path

from .clip import EchoClip
from .registry import create_image_encoder, create_text_encoder, create_video_encoder, list_encoders

#: frames an image model embeds (and averages) per clip at inference
IMAGE_EVAL_FRAMES = 32


def build_model(encoder: str, *, size: str, weights: str | Path | None = None, vocab_size: int,
                stored_frames: int, max_length: int, text_layers: int, pretrained_dir: str = "",
                loss: str = "clip") -> tuple[EchoClip, int]:
    """EchoClip with the video or image `encoder` at `size` (its tower started from the local `weights` file or
    folder, else from scratch) and a BERT text tower; returns it and the frames its video input has.

    `text_layers` is the depth of a text tower trained from scratch (ignored with `pretrained_dir`, the local
    tokenizer-and-weights folder it starts from instead)."""
    weights = str(weights) if weights else None
    if encoder in list_encoders()["image"]:
        enc = create_image_encoder(encoder, size=size, weights=weights)
        frames = min(stored_frames, IMAGE_EVAL_FRAMES)
    else:
        enc = create_video_encoder(encoder, size=size, weights=weights)
        frames = enc.num_frames
        if frames > stored_frames:
            raise ValueError(f"run encoder {encoder} ({size}) needs {frames} frames but the clip cache "
                             f"stores {stored_frames}: raise cache.frames")
    depth = {} if pretrained_dir else {"num_hidden_layers": text_layers}
    txt = create_text_encoder("bert", size=size, vocab_size=vocab_size, max_length=max_length,
                              pretrained_dir=pretrained_dir or None, embed_dim=enc.proj.out_features, **depth)
    return EchoClip(enc, txt, siglip=loss == "siglip"), frames


def init_weights(init: str, ssl_weights: str | Path | None = None) -> str | None:
    """The weights file a run's video/image tower starts from, by its `init`: None (scratch), the local path
    (local:PATH), or `ssl_weights`, the self-supervised weights the train stage wrote for it (ssl)."""
    from ..config import init_spec

    kind, path = init_spec(init)
    if kind == "ssl":
        if not ssl_weights:
            raise FileNotFoundError("init: ssl needs the self-supervised weights; the train stage pretrains them "
                                    "first (python -m echolib.train does)")
        return str(ssl_weights)
    return path or None


def load_clip_model(model_pt: str | Path):
    """Rebuild a trained EchoClip from its model.pt (weights + the run settings it was trained with)."""
    from ..io.weights import load_torch

    path = Path(model_pt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (run the train stage first)")
    ck = load_torch(path, "model")
    if "authors_checkpoint" in ck:  # a run of the authors' released model (encoder: authors)
        from .authors import load_authors_checkpoint, named_checkpoint

        net = load_authors_checkpoint(named_checkpoint(ck, path))
        return net.eval(), net.num_frames, ck
    run = dict(ck["run"])
    if run.get("size", "auto") == "auto":  # saved before sizes were explicit: the profile decided
        run["size"] = "paper" if ck.get("profile") == "paper" else "tiny"
    model, frames = build_model(run["encoder"], size=run["size"], vocab_size=ck["vocab_size"],
                                stored_frames=ck["frames"],
                                max_length=ck["max_length"], loss=ck["loss"],
                                text_layers=ck.get("text_layers") or _text_layers(ck["state_dict"]))
    model.load_state_dict(ck["state_dict"])
    return model.eval(), frames, ck


def _text_layers(state_dict: dict) -> int:
    """Depth of the text encoder a state dict holds (checkpoints that do not record it)."""
    prefix = "text_encoder.backbone.encoder.layer."
    return 1 + max((int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)), default=-1)


def run_views(ck: dict) -> list[str]:
    """The views a saved run was trained on (a list; older model.pt files hold a comma-joined string)."""
    views = ck["run"]["views"]
    return [v.strip() for v in views.split(",") if v.strip()] if isinstance(views, str) else list(views)
