"""LightningModule (EchoClipModule) and DataModule (ClipDataModule) for contrastive (clip, report) training."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, default_collate

from .datasets import ClipReportDataset, EpochSampler, model_input, worker_context
from .loss import SigLipLoss, create_loss
from .ranking import rank_metrics_from_embeddings, study_embeddings
from .store import open_store


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases, embeddings' 1-d params and the logit scale/bias."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_" in name or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class EchoClipModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, loss: str = "clip", lr: float = 5e-4, weight_decay: float = 0.1,
                 warmup_steps: int = 100, total_steps: int = 1000):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.loss_fn = create_loss(loss)
        self._val: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """uint8 clips from the loader -> float model input, on the device (see `echolib.data.model_input`)."""
        if batch["video"].dtype == torch.uint8:
            batch["video"] = model_input(batch.pop("video"), batch.pop("gain", None), batch.pop("bias", None))
        return batch

    def on_train_epoch_start(self):
        """A streaming dataset draws its shard order and shuffle from the epoch (see echolib.store)."""
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def model_step(self, batch: dict):
        v, t, scale = self.model(batch["video"], batch["input_ids"], batch["attention_mask"])
        if isinstance(self.loss_fn, SigLipLoss):
            loss = self.loss_fn(v, t, scale, self.model.logit_bias)
        else:
            loss = self.loss_fn(v, t, scale)
        return loss, v, t

    def training_step(self, batch: dict, batch_idx: int):
        loss, _, _ = self.model_step(batch)
        n = batch["video"].shape[0]
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("train/logit_scale", self.model.scale().detach(), batch_size=n)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int):
        loss, v, t = self.model_step(batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=batch["video"].shape[0])
        self._val.append((v.detach().float().cpu(), t.detach().float().cpu(), batch["study"].cpu()))

    def on_validation_epoch_end(self):
        if not self._val:
            return
        v, t, s = (torch.cat(x) for x in zip(*self._val, strict=True))
        self._val.clear()
        if self.trainer.world_size > 1:
            v, t, s = (self.all_gather(x.to(self.device)).flatten(0, 1).cpu() for x in (v, t, s))
        m = study_level_metrics(v, t, s)
        for k in ("r10_v2r", "r10_r2v", "mcmrr_v2r", "mcmrr_r2v"):
            self.log(f"val/{k}", m[k], sync_dist=False, rank_zero_only=False)
        # model selection: mean rank of the correct item in both directions (a mean over studies moves in
        # small steps, unlike R@10 on a validation split of ~90 studies)
        self.log("val/mcmrr", (m["mcmrr_v2r"] + m["mcmrr_r2v"]) / 2, sync_dist=False, rank_zero_only=False)
        self.log("val/n_studies", float(m["n"]))

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        hp = self.hparams
        opt = torch.optim.AdamW(param_groups(self.model, hp.weight_decay), lr=hp.lr, betas=(0.9, 0.98), eps=1e-6)
        sched = get_cosine_schedule_with_warmup(opt, min(hp.warmup_steps, hp.total_steps // 2), hp.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ValidateAtLastStep(L.Callback):
    """Validation at the run's last step too, whatever the interval: a run of 124 steps validated every 100 would
    otherwise be scored (and its best checkpoint chosen) at step 100. At the last batch the trainer is told to
    stop, which makes Lightning's loop validate before it does."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class StepProgress(L.Callback):
    """Training progress (steps, loss) for the terminal, through echolib.progress (never into a stage page)."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def on_train_start(self, trainer, pl_module) -> None:
        from .progress import bar

        if trainer.global_rank == 0:
            self.bar = bar(trainer.max_steps, self.desc, "step")
            self.bar.update(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
            self.bar.update(trainer.global_step - self.bar.n)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ResumeState(L.Callback):
    """Puts into every checkpoint what Lightning leaves out, and restores it: the random states (torch, numpy,
    Python) and the run's signature; on loading, it also points the epoch sampler past the batches the
    checkpointed run had already trained on in its epoch."""

    def __init__(self, signature: str):
        self.signature = signature

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()  # as tensors and numbers: loadable weights_only
        checkpoint["echolib"] = {"signature": self.signature, "torch": torch.get_rng_state(),
                                 "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
                                 "python": random.getstate()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        import random

        import numpy as np

        state = checkpoint.get("echolib", {})
        if state.get("signature") != self.signature:
            raise RuntimeError(f"checkpoint written by another run (signature {state.get('signature')})")
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        sampler = getattr(trainer.datamodule, "sampler", None)
        if sampler is not None:
            per_epoch = len(trainer.datamodule.train_dataloader())
            sampler.resume_at(checkpoint["global_step"] % per_epoch)


def study_level_metrics(video: torch.Tensor, text: torch.Tensor, study: torch.Tensor) -> dict:
    """Study embedding = mean of its clips' video embeddings; one report embedding per study."""
    v, order = study_embeddings(video, study.tolist())
    first = {}
    for i, sid in enumerate(study.tolist()):
        first.setdefault(sid, i)
    t = torch.nn.functional.normalize(text[[first[sid] for sid in order]], dim=-1)
    return rank_metrics_from_embeddings(v, t)


def collate_trim(items: list[dict]) -> dict:
    """Default collation, then token tensors cut to the longest report in the batch (saves text compute)."""
    batch = default_collate(items)
    n = int(batch["attention_mask"].sum(dim=1).max())
    batch["input_ids"], batch["attention_mask"] = batch["input_ids"][:, :n], batch["attention_mask"][:, :n]
    return batch


class ClipDataModule(L.LightningDataModule):
    """Training and validation clips of `views` from the clip store at `cache_dir`: a map-style dataset over the
    memory-mapped cache (Lightning adds a DistributedSampler under DDP), or `StreamingClips` over shards (split
    by rank and worker itself, reseeded every epoch)."""

    def __init__(self, cache_dir: str, views: list[str], num_frames: int, batch_size: int = 32,
                 num_workers: int = 2, shuffle_findings: bool = False, max_findings: int = 35, seed: int = 0):
        super().__init__()
        self.cache_dir, self.views, self.num_frames = cache_dir, views, num_frames
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle_findings, self.max_findings, self.seed = shuffle_findings, max_findings, seed

    def setup(self, stage: str | None = None):
        self.cache = open_store(self.cache_dir)
        if self.cache.kind == "shards":
            from .datasets import StreamingClips

            self.train_set = StreamingClips(self.cache, "train", self.views, self.num_frames, True, self.seed,
                                            shuffle_findings=self.shuffle_findings, max_findings=self.max_findings)
            # every rank scores every validation clip: gathered duplicates leave the study means unchanged
            self.val_set = StreamingClips(self.cache, "valid", self.views, self.num_frames, False, by_rank=False)
        else:
            self.train_set = ClipReportDataset(self.cache, self.cache.select("train", self.views), self.num_frames,
                                               True, self.shuffle_findings, self.max_findings, self.seed)
            self.sampler = EpochSampler(len(self.train_set), self.seed, self.batch_size)
            self.val_set = ClipReportDataset(self.cache, self.cache.select("valid", self.views), self.num_frames,
                                             False)
        if len(self.train_set) == 0:
            raise ValueError(f"{self.cache_dir}: no training clips of views {self.views}")

    def _loader(self, ds, drop_last: bool, sampler=None):
        # workers are made anew each epoch (not persistent), so that they see the epoch the dataset is set to
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=self.num_workers, collate_fn=collate_trim, pin_memory=torch.cuda.is_available(),
                          multiprocessing_context=worker_context(self.cache) if self.num_workers else None)

    def train_dataloader(self):
        # what one process sees: the streaming set is already split by rank, the map-style one is split by
        # Lightning's DistributedSampler
        world = self.trainer.world_size if self.trainer is not None and self.cache.kind != "shards" else 1
        mine = len(self.train_set) // world
        if mine < 2:
            raise ValueError(f"{self.cache_dir}: {len(self.train_set)} training clips of views {self.views} over "
                             f"{world} processes leave {mine} per process; a contrastive batch needs at least 2")
        # drop_last: a contrastive batch of 1 has no negatives; an epoch smaller than a batch is one batch
        return self._loader(self.train_set, mine > self.batch_size, getattr(self, "sampler", None))

    def val_dataloader(self):
        return self._loader(self.val_set, False)
