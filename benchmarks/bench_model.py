"""Cost of one pre-training step, and what the 2D target adds to it.

    .venv/bin/python benchmarks/bench_model.py [--config configs/pretrain/tiny.yaml] [--batch-size 32]
        [--iters 3] [--threads N] [--json FILE]

For the config on the CPU (and the paper config on CUDA when a GPU is visible) it times, per batch:

- ``hierarchy``: FPS + kNN tokenisation of the batch (runs in every step, as augmentation moves the points);
- ``I2P-MAE``: forward + backward of the model given that hierarchy and cached teacher maps (guided mask,
  3D + 2D targets; the teacher itself is excluded: its maps are computed once, by a random-weights stand-in
  with the teacher's channel count, since only their shape matters for the cost);
- ``Point-M2AE``: the same weights run as Point-M2AE (random mask, 3D target only, no 2D head),
  interleaved with the I2P-MAE steps in the same process; ``ratio`` = I2P-MAE / Point-M2AE.

Memory: the activations saved for backward (exact, device-independent), the process's peak RSS on the CPU
and ``max_memory_allocated`` on CUDA. On a shared machine wall time varies with the load; the CPU time of
the process is reported beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from i2pmae.config import I2PMAEConfig, load_config  # noqa: E402
from i2pmae.model import I2PMAE  # noqa: E402
from i2pmae.teachers import Teacher, compute_teacher_maps  # noqa: E402

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
PAPER = REPO / "configs" / "pretrain" / "paper.yaml"
PAPER_CUDA_BATCH = 64
PATCH = 16  # stand-in teacher: one 16 x 16 patch per feature cell (224 -> 14)
MIB = 2**20


class RandomTeacher(Teacher):
    """A random patch embedding with the real teacher's channel count: maps of the right shape, cheaply."""

    def __init__(self, dim: int) -> None:
        super().__init__(name="random", dim=dim)
        self.patch = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)
        self.freeze()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.patch(images)  # (n, C, 14, 14)
        saliency = features.square().mean(1).flatten(1).softmax(-1).reshape(features[:, 0].shape)
        return features, saliency


def random_clouds(batch: int, num_points: int, device: torch.device) -> Tensor:
    """(B, N, 3) points on random ellipsoids, in the unit sphere."""
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(batch, num_points, 3, generator=g)
    clouds = directions / directions.norm(dim=-1, keepdim=True) * (0.4 + torch.rand(batch, 1, 3, generator=g))
    return (clouds / clouds.norm(dim=-1).amax(1)[:, None, None]).to(device)


def point_m2ae_twin(model: I2PMAE) -> I2PMAE:
    """The same weights as a Point-M2AE run: random masking, 3D target only."""
    cfg = dataclasses.replace(model.cfg, masking="random", target_2d=False)
    twin = I2PMAE(cfg).to(next(model.parameters()).device)
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("rec_head_2d.")})
    return twin


class SavedBytes:
    """Counts the bytes autograd saves for backward while active (the activation memory of a step)."""

    def __init__(self) -> None:
        self.total = 0

    def __enter__(self) -> SavedBytes:
        def pack(tensor: Tensor) -> Tensor:
            self.total += tensor.numel() * tensor.element_size()
            return tensor

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(cfg: I2PMAEConfig, batch: int, iters: int, device: torch.device) -> dict[str, object]:
    """Median per-batch timings and memory of I2P-MAE vs its Point-M2AE twin on ``device``."""
    torch.manual_seed(0)
    model = I2PMAE(cfg).to(device).train()
    twin = point_m2ae_twin(model).train()
    points = random_clouds(batch, cfg.num_points, device)
    maps = compute_teacher_maps(RandomTeacher(cfg.teacher_dim).to(device), points)
    hierarchy = model.build_hierarchy(points)
    generator = torch.Generator(device=device).manual_seed(0)

    def step(net: I2PMAE, teacher_maps) -> None:
        enc = net.forward_encoder(points, teacher_maps, hierarchy=hierarchy, generator=generator)
        net.forward_loss(enc, net.forward_decoder(enc), teacher_maps).loss.backward()
        net.zero_grad(set_to_none=True)

    runs = {"hierarchy": lambda: model.build_hierarchy(points), "I2P-MAE": lambda: step(model, maps),
            "Point-M2AE": lambda: step(twin, None)}  # fmt: skip
    for fn in runs.values():  # warm-up
        fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(iters):  # interleaved, so load changes hit both variants alike
        for name, fn in runs.items():
            samples[name].append(timed(fn, device))
    result: dict[str, object] = {"device": str(device), "batch": batch, "threads": torch.get_num_threads()}
    for name, values in samples.items():
        result[f"{name} wall s"] = statistics.median(v[0] for v in values)
        result[f"{name} cpu s"] = statistics.median(v[1] for v in values)
    result["ratio (wall)"] = result["I2P-MAE wall s"] / result["Point-M2AE wall s"]
    result["ratio (cpu)"] = result["I2P-MAE cpu s"] / result["Point-M2AE cpu s"]
    for name, net, teacher_maps in (("I2P-MAE", model, maps), ("Point-M2AE", twin, None)):
        with SavedBytes() as saved:
            enc = net.forward_encoder(points, teacher_maps, hierarchy=hierarchy, generator=generator)
            loss = net.forward_loss(enc, net.forward_decoder(enc), teacher_maps).loss
        del loss, enc
        result[f"{name} saved activations MiB"] = saved.total / MIB
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step(net, teacher_maps)
            result[f"{name} peak allocated MiB"] = torch.cuda.max_memory_allocated(device) / MIB
    result["parameters (I2P-MAE, Point-M2AE)"] = [
        sum(p.numel() for p in m.parameters()) for m in (model, twin)
    ]
    if device.type == "cpu":
        result["process peak RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(TINY), help="pre-training config for the CPU run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [bench(load_config(args.config), args.batch_size, args.iters, torch.device("cpu"))]
    results[0]["config"] = Path(args.config).name
    if torch.cuda.is_available():
        results.append(bench(load_config(PAPER), PAPER_CUDA_BATCH, args.iters, torch.device("cuda")))
        results[1]["config"] = PAPER.name
    for result in results:
        print(f"--- {result['config']} on {result['device']}, batch {result['batch']}")
        for key, value in result.items():
            print(f"  {key:38s} {value:.3f}" if isinstance(value, float) else f"  {key:38s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
