"""`python -m echolib.weights verify PATH`: what a weights file is before a run trusts it.

For a file (or a folder holding one) it prints, one fact per line: the layout it recognises, the SHA-256 of the file
(to compare with the one its publisher lists), the parameter count, the licence note a user must know, and the
result of loading it and running one fixed input through it (shapes, and that every output is finite). Layouts:

| layout | what | fixed input |
|---|---|---|
| `authors-vivit`, `authors-videomae2` | the authors' released `checkpoint_*.pt` (echolib.models.authors) | a clip and a report through both towers |
| `echolib-run` | a run's `model.pt` written by the train stage | a clip and a report through both towers |
| `echolib-views` | the view classifier's `model.pt` (view_classifier stage) | a clip: six view probabilities |
| `vivit`, `videomae`, `videomae2`, `timm-convnext`, `open_clip-convnext`, `echolib-ssl` | a backbone (echolib.models.pretrained) | through the paper-size encoder it loads into |

Files are read with `weights_only=True` (echolib.io.weights): a file that would run code is refused, not opened.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .io.files import sha256_file

#: what a user must know before using weights of each layout beyond research here (a note, not legal advice)
LICENCE_NOTES = {
    "authors-vivit": "the authors' checkpoint: no licence is stated in UTcardiology/video-echo-clip's README; ask "
                     "the authors (r-takizawa on Hugging Face) before any use beyond research",
    "authors-videomae2": "the authors' checkpoint: no licence is stated in UTcardiology/video-echo-clip's README; "
                         "it is fine-tuned from VideoMAE v2 weights, which OpenGVLab publishes under CC-BY-NC-4.0 "
                         "(non-commercial)",
    "videomae2": "VideoMAE v2 weights: OpenGVLab publishes them under CC-BY-NC-4.0 (non-commercial)",
    "videomae": "VideoMAE weights: read the licence on the model card of the source you took them from",
    "vivit": "ViViT weights: read the licence on the model card of the source you took them from",
    "timm-convnext": "timm ConvNeXt weights: read the model card; ImageNet-trained weights carry ImageNet's terms "
                     "(non-commercial research) in many readings",
    "open_clip-convnext": "open_clip weights: read the model card of the source (LAION-trained weights; EchoCLIP's "
                          "terms are its authors')",
    "echolib-ssl": "self-supervised weights written by echolib from your own clips: your data's terms apply",
    "echolib-run": "a model trained by echolib on your data: your data's terms apply (and those of any weights "
                   "it started from)",
    "echolib-views": "a view classifier trained by echolib on your data: your data's terms apply",
}


class VerifyError(ValueError):
    """The file cannot be verified; the message names it and says why."""


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _finite(*xs: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in xs)


def _clip_check(model, frames: int, size: int, vocab: int) -> str:
    """One fixed clip (seeded noise) and one fixed report (token ids 2..17) through a CLIP model's two towers."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, frames, 3, size, size, generator=g)
    ids = (torch.arange(16) % max(vocab - 2, 1) + 2)[None]
    with torch.inference_mode():
        v = model.encode_video(video)
        t = model.encode_text(ids, torch.ones_like(ids))
    sim = float((v @ t.T)[0, 0])
    return (f"fixed input: clip {tuple(video.shape)} -> {tuple(v.shape)}, report of 16 tokens -> {tuple(t.shape)}, "
            f"cosine {sim:+.4f}, {'all finite' if _finite(v, t) else 'NOT FINITE'}")


def _raw(path: Path):
    from .io.weights import load_torch

    return load_torch(path, "weights file") if path.suffix != ".safetensors" else None


def verify(path: str | Path) -> dict:
    """The facts `verify` prints, as a dict: file, layout, sha256, parameters, licence, check."""
    from .models.pretrained import WeightsError, weights_file

    try:
        f = weights_file(path)
    except FileNotFoundError as e:
        raise VerifyError(str(e)) from None
    out = {"file": str(f), "sha256": sha256_file(f)}
    raw = _raw(f)
    if isinstance(raw, dict):
        from .models.authors import is_authors_checkpoint

        if is_authors_checkpoint(raw):
            from .models.authors import IMAGE_SIZE, load_authors_checkpoint

            model = load_authors_checkpoint(f).eval()
            kind = "videomae2" if any(".model.model." in k for k in raw["state_dict"]) else "vivit"
            vocab = model.text.transformer.config.vocab_size
            return out | {"layout": f"authors-{kind}", "parameters": _params(model),
                          "licence": LICENCE_NOTES[f"authors-{kind}"],
                          "check": _clip_check(model, model.num_frames, IMAGE_SIZE, vocab)}
        if "authors_checkpoint" in raw:  # a run of the authors' model (encoder: authors): verify what it names
            from .models.authors import named_checkpoint

            inner = verify(named_checkpoint(raw, f))
            return inner | {"file": f"{f} -> {inner['file']}"}
        if {"run", "state_dict", "vocab_size"} <= set(raw):
            from .models import load_clip_model

            model, frames, ck = load_clip_model(f)
            size = ck.get("size") or 64
            return out | {"layout": "echolib-run", "parameters": _params(model),
                          "licence": LICENCE_NOTES["echolib-run"],
                          "check": _clip_check(model, frames, int(size), int(ck["vocab_size"]))}
        if {"model", "frames", "temperature", "state_dict"} <= set(raw):
            from .views import CLASSES, load_model, softmax

            if f.name != "model.pt":
                raise VerifyError(f"{f}: a view classifier is read from its folder's model.pt")
            model, ck = load_model(f.parent)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(1, 3 * ck["frames"], ck["size"], ck["size"], generator=g)
            with torch.inference_mode():
                p = softmax(model(x).float().numpy(), ck["temperature"])[0]
            return out | {"layout": "echolib-views", "parameters": _params(model),
                          "licence": LICENCE_NOTES["echolib-views"],
                          "check": f"fixed input: clip of {ck['frames']} frames at {ck['size']} px -> "
                                   f"{len(CLASSES)} view probabilities summing to {p.sum():.4f} "
                                   f"(top {CLASSES[int(p.argmax())]} {p.max():.3f})"}
    try:
        return out | _backbone(f)
    except WeightsError as e:
        raise VerifyError(f"{f}: {e}") from None


#: the encoder (at size `paper`) each backbone layout loads into for the fixed input
_ENCODER_OF = {"vivit": "vivit", "videomae": "videomae", "videomae2": "videomae", "timm-convnext": "convnext",
               "open_clip-convnext": "convnext", "echolib-ssl": None}


def _backbone(f: Path) -> dict:
    from .models.pretrained import detect_layout, read_state

    state, meta, _ = read_state(f)
    layout = detect_layout(state, meta)
    res = {"layout": layout, "parameters": sum(v.numel() for v in state.values()),
           "licence": LICENCE_NOTES[layout]}
    name = _ENCODER_OF[layout] or (meta.get("encoder") if isinstance(meta.get("encoder"), str) else None)
    if not name:
        return res | {"check": "fixed input: not run (the file does not say which encoder it was written for)"}
    from .models.registry import create_image_encoder, create_video_encoder, list_encoders

    make = create_image_encoder if name in list_encoders()["image"] else create_video_encoder
    try:
        enc = make(name, size="paper", weights=str(f)).eval()
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding, said in one line
        first = str(e).splitlines()[0][:300]
        return res | {"check": f"fixed input: not run: it does not load into the paper-size {name} "
                               f"({type(e).__name__}: {first})"}
    frames = getattr(enc, "num_frames", 1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, frames, 3, 224, 224, generator=g)
    with torch.inference_mode():
        y = enc(x)
    return res | {"check": f"fixed input: loaded into the paper-size {name}; clip {tuple(x.shape)} -> "
                           f"{tuple(y.shape)}, {'all finite' if _finite(y) else 'NOT FINITE'}"}


def main(argv: list[str] | None = None) -> int:
    from .io.safe import for_terminal
    from .io.weights import CheckpointError

    ap = argparse.ArgumentParser(prog="python -m echolib.weights", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="layout, SHA-256, parameters, licence note, and a fixed input through it")
    v.add_argument("path", help="a weights file, or a folder holding one")
    a = ap.parse_args(argv)
    try:
        res = verify(a.path)
    except (VerifyError, CheckpointError, ValueError) as e:
        print(f"error: {for_terminal(str(e))}", file=sys.stderr)
        return 2
    for key in ("file", "layout", "sha256", "parameters", "licence", "check"):
        value = f"{res[key]:,}" if key == "parameters" else res[key]
        print(f"{key + ':':<12}{for_terminal(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
