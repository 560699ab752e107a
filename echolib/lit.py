"""LightningModule (EchoClipModule) and DataModule (ClipDataModule) for contrastive (clip, report) training."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, default_collate

from .cache import ClipCache, ClipReportDataset, model_input
from .loss import SigLipLoss, create_loss
from .ranking import rank_metrics_from_embeddings, study_embeddings


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
    def __init__(self, cache_dir: str, views: list[str], num_frames: int, batch_size: int = 32,
                 num_workers: int = 2, shuffle_findings: bool = False, max_findings: int = 35):
        super().__init__()
        self.cache_dir, self.views, self.num_frames = cache_dir, views, num_frames
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle_findings, self.max_findings = shuffle_findings, max_findings

    def setup(self, stage: str | None = None):
        self.cache = ClipCache(self.cache_dir)
        self.train_set = ClipReportDataset(self.cache, self.cache.select("train", self.views), self.num_frames, True,
                                           self.shuffle_findings, self.max_findings)
        self.val_set = ClipReportDataset(self.cache, self.cache.select("valid", self.views), self.num_frames, False)
        if len(self.train_set) == 0:
            raise ValueError(f"{self.cache_dir}: no training clips of views {self.views}")

    def _loader(self, ds, shuffle: bool, drop_last: bool):
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=collate_trim,
                          pin_memory=torch.cuda.is_available())

    def train_dataloader(self):
        # drop_last: a contrastive batch of 1 has no negatives
        return self._loader(self.train_set, True, len(self.train_set) > self.batch_size)

    def val_dataloader(self):
        return self._loader(self.val_set, False, False)
