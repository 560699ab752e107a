"""Self-supervised pretraining of a run's video or image encoder on the clips of the training patients only.

No report, no label and no clip of a validation or test patient is read: the clips come from the clip store's
rows whose split is `train`, and a pretraining set of a given size is a random fraction of the training *patients*
(nested: a smaller set's patients are part of every larger one), so sizes can be compared as the paper's Fig. 2
compares pretraining sets.

Objectives (decided before any result, by what suits the architecture):
- ConvNeXt encoders (`convnext_st`, `convnext_early`, `convnext`): two views of one clip are matched against the
  other clips of the batch (symmetric InfoNCE, temperature `pretrain.temperature`, a 2-layer MLP head as in
  SimCLR). A video view is a time window at a random offset; an image view is one random frame; each view has its
  own random crop (50-100 % of the area) and its own gain and bias. ConvNeXt is not a ViT: tube masking has no
  patches to drop, and ConvNeXt V2's masked autoencoding needs sparse convolutions.
- ViT encoders (`videomae`): masked video autoencoding, transformers' `VideoMAEForPreTraining` with tube masking
  (the same spatial patches hidden in every frame) at `pretrain.mask_ratio` (0.9 as VideoMAE).

Where: on the accelerator `train.accelerator` names (one GPU, `LOCAL_RANK`'s, with `train.precision`: bf16 autocast
by default on a GPU), from either clip store: the memory-mapped cache draws each batch's clips at random from the
pretraining set; the sharded store (`cache.store: shards`, the paper profile) streams that set's clips epoch after
epoch, shards in a new seeded order each epoch, through a shuffle buffer, decoded in `train.num_workers` workers.

`python -m echolib.pretrain --encoder convnext_st --size tiny --fraction 0.25 --out DIR` writes DIR/encoder.pt
(loadable by `init: local:DIR/encoder.pt`; `init: ssl` makes the train stage do this itself), DIR/summary.json and
the loss curve in DIR/dvclive (as the training curves).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from . import config as C
from .accel import device_for
from .curves import curves_logger
from .datasets import frame_indices, frames_tensor, max_offset, model_input, shuffled, worker_context
from .io.files import claim_output, mark_output
from .io.safe import for_terminal
from .loop import Stepper
from .store import decode_clip, open_store

LAYOUT = "echolib-ssl"


def pretrain_patients(index: pl.DataFrame, fraction: float, seed: int) -> list[str]:
    """A `fraction` of the training patients (at least one), nested across fractions: the patients are shuffled
    once by `seed` and the first ceil(fraction * n) taken."""
    patients = sorted(index.filter(pl.col("split") == "train")["patient_id"].unique().to_list())
    if not patients:
        raise ValueError("the clip store has no training clips to pretrain on")
    order = np.random.default_rng([seed, 2]).permutation(len(patients))
    n = max(1, int(np.ceil(fraction * len(patients))))
    return [patients[i] for i in order[:n]]


def pretrain_rows(index: pl.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Store rows of the clips of `pretrain_patients` (training split only, by construction)."""
    keep = set(pretrain_patients(index, fraction, seed))
    rows = index.with_row_index("_i").filter((pl.col("split") == "train") & pl.col("patient_id").is_in(keep))
    return rows["_i"].to_numpy()


def _crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random square crop of 50-100 % of the area, resized back: (..., C, H, W)."""
    h = x.shape[-1]
    side = int(round(h * float(0.5 + 0.5 * torch.rand((), generator=gen)) ** 0.5))
    i, j = (int(torch.randint(h - side + 1, (), generator=gen)) for _ in range(2))
    crop = x[..., i:i + side, j:j + side]
    shape = crop.shape
    out = nn.functional.interpolate(crop.reshape(-1, *shape[-3:]), size=(h, h), mode="bilinear", align_corners=False)
    return out.reshape(*shape[:-2], h, h)


def view_batch(clips, num_frames: int, stored: int, gen: torch.Generator,
               device: torch.device | None = None) -> torch.Tensor:
    """One augmented view per clip of `clips` (arrays T, H, W, C uint8): a time window of `num_frames` (one random
    frame when `num_frames` is 1, as (B, C, H, W)), its own crop, gain and bias, as the float input every encoder
    sees, on `device` (the frames travel as uint8; the random draws come from `gen` on the CPU, so a run draws the
    same views on any device)."""
    out = []
    for clip in clips:
        if num_frames == 1:
            idx = np.array([int(torch.randint(stored, (), generator=gen))])
        else:
            idx = frame_indices(stored, num_frames, int(torch.randint(max_offset(stored, num_frames) + 1, (),
                                                                      generator=gen)))
        out.append(frames_tensor(clip[idx]))
    n = len(out)
    gain, bias = 0.85 + 0.3 * torch.rand(n, generator=gen), 0.05 * (torch.rand(n, generator=gen) - 0.5)
    x = model_input(torch.stack(out).to(device), gain.to(device), bias.to(device))
    x = torch.stack([_crop(v, gen) for v in x])
    return x[:, 0] if num_frames == 1 else x


class ShardClips(torch.utils.data.IterableDataset):
    """(video_id, decoded clip T x H x W x C uint8) for the clips of `video_ids` in a sharded store, epoch after
    epoch without end: each epoch reads the shards holding them in a new order seeded by (seed, epoch), through a
    shuffle buffer; with a DataLoader of W workers, worker w decodes every W-th of them (a worker left with none
    stops, so that fewer clips than workers cannot stall the loader)."""

    def __init__(self, store, video_ids, seed: int, buffer: int = 256):
        super().__init__()
        self.keep, self.seed, self.buffer = set(video_ids), seed, buffer
        if not self.keep:
            raise ValueError("no clips to pretrain on")
        rows = store.index.filter(pl.col("video_id").is_in(list(self.keep)))
        self.paths = [str(store.path / "shards" / name) for name in sorted(set(rows["shard"].to_list()))]

    def __iter__(self):
        import webdataset as wds

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.paths))
            reader = wds.DataPipeline(wds.SimpleShardList([self.paths[i] for i in order]), wds.tarfile_to_samples())
            mine = (s for i, s in enumerate(s for s in reader if s["__key__"] in self.keep) if i % workers == worker)
            n = 0
            for sample in shuffled(mine, self.buffer, np.random.default_rng([self.seed, epoch, worker])):
                n += 1
                yield sample["__key__"], decode_clip(sample["mp4"])
            if n == 0:
                return
            epoch += 1


def _batches(store, rows: np.ndarray, batch_size: int, gen: torch.Generator, seed: int, workers: int):
    """Endless batches of clips of the pretraining set: drawn at random from the memory-mapped cache, or streamed
    from the shards."""
    if store.kind == "memmap":
        while True:
            pick = rows[torch.randint(len(rows), (batch_size,), generator=gen).numpy()]
            yield [store.clips[r] for r in pick]
    feed = ShardClips(store, store.index[rows]["video_id"].to_list(), seed)
    for batch in torch.utils.data.DataLoader(feed, batch_size=batch_size, num_workers=workers, collate_fn=list,
                                             persistent_workers=workers > 0,
                                             multiprocessing_context=worker_context(store) if workers else None):
        yield [clip for _, clip in batch]


class Contrastive(nn.Module):
    """encoder -> MLP head; loss: symmetric InfoNCE between the two views of each clip."""

    def __init__(self, encoder: nn.Module, temperature: float, dim: int = 128):
        super().__init__()
        from .loss import ClipLoss

        width = encoder.proj.out_features
        self.encoder, self.loss, self.scale = encoder, ClipLoss(), 1.0 / temperature
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(self.scale, device=a.device)
        return self.loss(self.head(self.encoder(a)), self.head(self.encoder(b)), scale)


class MaskedVideo(nn.Module):
    """VideoMAEForPreTraining around our videomae encoder's backbone (shared weights), tube masking."""

    def __init__(self, encoder: nn.Module, mask_ratio: float):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEForPreTraining

        cfg = VideoMAEConfig(**{**encoder.backbone.config.to_dict(), "decoder_num_hidden_layers": 1,
                                "decoder_hidden_size": encoder.backbone.config.hidden_size // 2,
                                "decoder_num_attention_heads": 2,
                                "decoder_intermediate_size": encoder.backbone.config.hidden_size * 2})
        self.mae = VideoMAEForPreTraining(cfg)
        self.mae.videomae = encoder.backbone  # the encoder trained is the run's own
        c = cfg
        self.per_frame = (c.image_size // c.patch_size) ** 2
        self.times = c.num_frames // c.tubelet_size
        self.mask_ratio = mask_ratio

    def tube_mask(self, n: int, gen: torch.Generator) -> torch.Tensor:
        hide = int(round(self.mask_ratio * self.per_frame))
        masks = torch.zeros(n, self.per_frame, dtype=torch.bool)
        for i in range(n):
            masks[i, torch.randperm(self.per_frame, generator=gen)[:hide]] = True
        return masks.repeat(1, self.times)  # the same patches hidden at every time step (tubes)

    def forward(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.mae(pixel_values=x, bool_masked_pos=self.tube_mask(len(x), gen).to(x.device)).loss


def objective(encoder_name: str) -> str:
    return "masked-video" if encoder_name == "videomae" else "contrastive"


def pretrain_encoder(encoder_name: str, size: str, store_dir: str | Path, out: str | Path, fraction: float,
                     cfg: C.PretrainConfig, seed: int = 0, train: C.TrainConfig | None = None) -> dict:
    """Pretrain a fresh `encoder_name` encoder on `fraction` of the training patients' clips, on the device
    `train` names (the CPU without it); writes out/encoder.pt ({"echolib_init": state, "layout": "echolib-ssl",
    ...}), out/summary.json, out/dvclive."""
    from .encoders import frames as frames_of
    from .models import create_image_encoder, create_video_encoder, list_encoders
    from .progress import bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out)
    store = open_store(store_dir)
    device, autocast = device_for(train)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    image = encoder_name in list_encoders()["image"]
    encoder = (create_image_encoder if image else create_video_encoder)(encoder_name, size=size)
    num_frames = 1 if image else frames_of(encoder_name, size)
    rows = pretrain_rows(store.index, fraction, seed)
    kind = objective(encoder_name)
    model = MaskedVideo(encoder, cfg.mask_ratio) if kind == "masked-video" else Contrastive(encoder, cfg.temperature)
    model.to(device)
    stepper = Stepper(model, cfg.lr, weight_decay=0.05, steps=cfg.steps, clip=1.0, device_type=device.type,
                      float16=autocast == torch.float16)
    batches = _batches(store, rows, cfg.batch_size, gen, seed, train.num_workers if train else 0)
    stored = store.meta["frames"]
    live = curves_logger(out / "dvclive")
    share = "all" if fraction == 1 else f"{fraction:g} of the"
    progress = bar(cfg.steps, f"pretrain {encoder_name} on {share} training patients ({len(rows)} clips)", "step")
    model.train()
    t0, losses = time.time(), []
    for _ in range(cfg.steps):
        clips = next(batches)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            if kind == "masked-video":
                loss = model(view_batch(clips, num_frames, stored, gen, device), gen)
            else:
                loss = model(view_batch(clips, num_frames, stored, gen, device),
                             view_batch(clips, num_frames, stored, gen, device))
        losses.append(stepper.step(loss))
        live.log_metric("pretrain/loss", losses[-1])
        live.log_metric("pretrain/lr", stepper.lr)
        live.next_step()
        progress.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        progress.update(1)
    seconds = time.time() - t0
    batches.close()  # ends the shard readers' worker processes
    progress.close()
    live.end()
    index = store.index
    patients = index[rows]["patient_id"].unique().to_list()
    summary = {"encoder": encoder_name, "size": size, "objective": kind, "fraction": fraction,
               "patients": len(patients), "clips": len(rows),
               "splits_seen": sorted(index[rows]["split"].unique().to_list()), **cfg.to_dict(), "seed": seed,
               "seconds": round(seconds, 1), "device": str(device), "store": store.kind,
               "clips_per_second": round(cfg.steps * cfg.batch_size / max(seconds, 1e-9), 1),
               "first_loss": float(np.mean(losses[:10])), "final_loss": float(np.mean(losses[-10:]))}
    encoder.to("cpu")
    torch.save({"echolib_init": encoder.state_dict(), "layout": LAYOUT, "encoder": type(encoder).__name__,
                "name": encoder_name, "summary": summary}, out / "encoder.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.pretrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True, help="a registered video or image encoder (echolib.encoders)")
    ap.add_argument("--size", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--fraction", type=float, default=1.0, help="of the training patients, in (0, 1]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="params.yaml", help="pretrain.* settings and the data root")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if not 0 < a.fraction <= 1:
        raise SystemExit(f"error: --fraction must be in (0, 1], got {a.fraction}")
    try:
        p = C.load(a.params)
        data = C.project_root(Path(a.params).resolve().parent) / p.base.data_root
        claim_output(a.out, [data / "cache"])  # new, empty or echolib's own
        s = pretrain_encoder(a.encoder, a.size, data / "cache", a.out, a.fraction, p.pretrain, a.seed, p.train)
    except (C.ConfigError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {for_terminal(e)}") from None
    print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
