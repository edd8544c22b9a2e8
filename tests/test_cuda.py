"""The CUDA paths (skipped without a GPU): geometry, masking and the model on CUDA match the CPU.

``scripts/gpu_check.sh`` runs this file on a GPU machine, then the paper-config benchmark and 200 steps.
"""

import dataclasses

import pytest
import torch
from helpers import SMALL_MODEL, StandInTeacher, make_clouds

from i2pmae.config import I2PMAEConfig
from i2pmae.engine import autocast
from i2pmae.geometry import build_hierarchy, farthest_point_sample, knn
from i2pmae.masking import guided_mask, propagate_mask, random_mask
from i2pmae.model import I2PMAE
from i2pmae.teachers import compute_teacher_maps

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
BF16_LOSS_RTOL = 0.03  # as tests/test_model.py


def test_fps_and_knn_on_cuda_match_the_cpu():
    points = make_clouds(3, 1024)
    on_gpu = points.to(CUDA)
    assert torch.equal(farthest_point_sample(on_gpu, 256).cpu(), farthest_point_sample(points, 256))
    centers = points[:, :256]
    assert torch.equal(knn(centers.to(CUDA), on_gpu, 16).cpu(), knn(centers, points, 16))
    with torch.autocast("cuda", dtype=torch.bfloat16):  # candidates stay float32
        assert torch.equal(knn(centers.to(CUDA), on_gpu, 16).cpu(), knn(centers, points, 16))


def test_masks_on_cuda_keep_counts_and_propagate_as_on_the_cpu():
    hierarchy = build_hierarchy(make_clouds(4, 256), (64, 32, 8), (8, 4, 4))
    gen = torch.Generator(device=CUDA).manual_seed(0)
    top = random_mask(4, 8, 0.75, generator=gen)
    assert top.device.type == "cuda" and (~top).sum(1).tolist() == [2] * 4
    guided = guided_mask(torch.rand(4, 8, device=CUDA), 0.75, temperature=1e-6, generator=gen)
    assert (~guided).sum(1).tolist() == [2] * 4
    cuda_hierarchy = dataclasses.replace(hierarchy, neighbor_idx=[i.to(CUDA) for i in hierarchy.neighbor_idx])
    on_gpu = propagate_mask(top, cuda_hierarchy)
    on_cpu = propagate_mask(top.cpu(), hierarchy)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(on_gpu, on_cpu, strict=True))


def _loss_and_grads(model: I2PMAE, points, maps, top_mask, precision="fp32"):
    with autocast(precision, points.device):
        out = model(points, maps, top_mask=top_mask)
    out.loss.backward()
    grads = {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.loss.item(), grads


def test_model_forward_and_backward_on_cuda_match_the_cpu():
    cfg = I2PMAEConfig(**{**SMALL_MODEL, "masking": "guided", "target_2d": True})
    torch.manual_seed(0)
    model, teacher = I2PMAE(cfg).double(), StandInTeacher()
    points = make_clouds(2, cfg.num_points)
    maps = compute_teacher_maps(teacher, points)
    maps = dataclasses.replace(maps, features=maps.features.double(), saliency=maps.saliency.double())
    top = random_mask(2, cfg.num_centers[-1], cfg.mask_ratio, generator=torch.Generator().manual_seed(1))
    loss_cpu, grads_cpu = _loss_and_grads(model, points.double(), maps, top)
    model.to(CUDA)
    cuda_maps = compute_teacher_maps(teacher.to(CUDA), points.to(CUDA))
    cuda_maps = dataclasses.replace(cuda_maps, features=maps.features.to(CUDA),
                                    saliency=maps.saliency.to(CUDA))
    loss_gpu, grads_gpu = _loss_and_grads(model, points.double().to(CUDA), cuda_maps, top.to(CUDA))
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-10)
    for name, grad in grads_cpu.items():
        torch.testing.assert_close(grads_gpu[name], grad, rtol=1e-8, atol=1e-10, msg=name)
    model.float()
    cuda_maps = dataclasses.replace(cuda_maps, features=cuda_maps.features.float(),
                                    saliency=cuda_maps.saliency.float())
    fp32, _ = _loss_and_grads(model, points.to(CUDA), cuda_maps, top.to(CUDA))
    bf16, _ = _loss_and_grads(model, points.to(CUDA), cuda_maps, top.to(CUDA), "bf16")
    assert bf16 == pytest.approx(fp32, rel=BF16_LOSS_RTOL)
