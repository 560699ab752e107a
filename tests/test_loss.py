"""ClipLoss against the paper's formula, and 2-process CPU DDP against one process on the joined batch."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from echolib.loss import ClipLoss, SigLipLoss, create_loss


def reference(v, t, scale):
    v = v / v.norm(dim=1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    n = len(v)
    total = 0.0
    for i in range(n):  # Eq. (1): video i against every report; Eq. (2): report i against every video
        sims_v = [scale * float(v[i] @ t[j]) for j in range(n)]
        sims_t = [scale * float(t[i] @ v[j]) for j in range(n)]
        total += -(sims_v[i] - math.log(sum(math.exp(s) for s in sims_v)))
        total += -(sims_t[i] - math.log(sum(math.exp(s) for s in sims_t)))
    return total / (2 * n)


def test_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(7, 16, generator=g), torch.randn(7, 16, generator=g)
    scale = torch.tensor(1 / 0.07)
    assert ClipLoss()(v, t, scale).item() == pytest.approx(reference(v, t, scale.item()), rel=1e-5)


def test_perfect_alignment_low_loss_and_shape_error():
    e = torch.eye(5)
    assert ClipLoss()(e, e, torch.tensor(100.0)).item() < 1e-3
    with pytest.raises(ValueError, match="embeddings differ"):
        ClipLoss()(torch.zeros(3, 4), torch.zeros(2, 4), torch.tensor(1.0))


def test_siglip_and_factory():
    e = torch.eye(4)
    good = SigLipLoss()(e, e, torch.tensor(10.0), torch.tensor(-5.0))
    bad = SigLipLoss()(e, e.flip(0), torch.tensor(10.0), torch.tensor(-5.0))
    assert good < bad
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("triplet")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, v, t, scale, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    n = v.shape[0] // world
    lv = v[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    lt = t[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    s = scale.clone().requires_grad_(True)
    loss = ClipLoss()(lv, lt, s)
    # DDP averages gradients over ranks: each rank's loss is the mean over its own rows
    (loss / world).backward()
    gs = s.grad.clone()
    dist.all_reduce(gs)
    out[rank] = {"loss": loss.detach(), "gv": lv.grad, "gt": lt.grad, "gs": gs}
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_equals_single_process():
    g = torch.Generator().manual_seed(1)
    v, t = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    scale = torch.tensor(5.0)
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), v, t, scale, out), nprocs=2, join=True)
    fv, ft, fs = v.clone().requires_grad_(True), t.clone().requires_grad_(True), scale.clone().requires_grad_(True)
    full = ClipLoss()(fv, ft, fs)
    full.backward()
    mean_loss = (out[0]["loss"] + out[1]["loss"]) / 2
    assert mean_loss.item() == pytest.approx(full.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([out[0]["gv"], out[1]["gv"]]), fv.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.cat([out[0]["gt"], out[1]["gt"]]), ft.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out[0]["gs"], fs.grad, rtol=1e-4, atol=1e-6)
