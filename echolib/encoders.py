"""The encoders params.yaml can name, without importing them: kind (video, image, text), the sizes each comes in,
and the frames a video encoder takes at each size. `echolib.models` registers one factory per name here (a test
checks that the two agree), so checking params.yaml needs neither torch nor the model code.
"""

from __future__ import annotations

SIZES = ("tiny", "paper")

ENCODERS: dict[str, dict] = {
    "convnext": {"kind": "image"},  # timm ConvNeXt on single frames (SingleImage)
    "convnext_st": {"kind": "video", "frames": {"tiny": 8, "paper": 16}},  # the same per frame + temporal layers
    "convnext_early": {"kind": "video", "frames": {"tiny": 16, "paper": 32}},  # the same, frames stacked as channels
    "vivit": {"kind": "video", "frames": {"tiny": 16, "paper": 32}},  # transformers ViViT
    "videomae": {"kind": "video", "frames": {"tiny": 16, "paper": 16}},  # transformers VideoMAE
    "bert": {"kind": "text"},  # transformers BERT (tohoku-nlp/bert-base-japanese-v3 sizes at `paper`)
    # the authors' released model (init: local:checkpoint_*.pt): scored as it is, on the archive's own video files
    # with their preprocessing; nothing is trained
    "authors": {"kind": "checkpoint"},
}


def names(*kinds: str) -> list[str]:
    return sorted(n for n, e in ENCODERS.items() if e["kind"] in kinds)


def frames(name: str, size: str) -> int:
    """Frames a video encoder takes at `size` (1 for an image encoder, which embeds frames one at a time)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    e = ENCODERS[name]
    if e["kind"] == "image":
        return 1
    if e["kind"] == "checkpoint":
        return 0  # reads its own frames from the video files
    if size not in e.get("frames", {}):
        raise ValueError(f"encoder {name!r} has no size {size!r}; sizes: {sorted(e.get('frames', {}))}")
    return e["frames"][size]
