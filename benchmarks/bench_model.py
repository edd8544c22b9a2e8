"""Pre-training throughput (shapes/s) against today's step, and what the 2D target costs.

    .venv/bin/python benchmarks/bench_model.py [--config configs/pretrain/tiny.yaml] [--batch-size 32]
        [--iters 3] [--threads 1 2] [--no-ddp] [--no-cost] [--baseline-ref 5b6850b] [--cuda-only]
        [--cuda-config configs/pretrain/paper.yaml] [--cuda-batch-size 64] [--json FILE]

**Throughput.** One pre-training step as ``i2pmae.train`` runs it with the teacher cache: augment, the batch's
cached teacher maps, forward (at a precision), backward, AdamW. Variants, interleaved step by step so that
load changes on a shared machine hit them alike (median of ``--iters`` steps after one warm-up):

- ``today``: the code of ``--baseline-ref`` (the package as it was before the speed work, extracted from git
  into a temporary directory and imported under another name), fp32;
- ``today bf16``: that code under ``torch.autocast(bfloat16)`` (bf16 alone);
- ``now``: this working tree, fp32 (its exact re-orderings alone; the first step's loss must equal today's);
- ``now bf16``: this working tree under autocast (everything together);

each with 1 and 2 torch threads (``--threads``), and with two processes of one thread each that share the
batch (gloo DDP, the way ``torchrun --nproc_per_node=2 -m i2pmae.cli pretrain ... train.batch_size=16`` runs
the recipe's batch of 32; ``--no-ddp`` skips it). ``x today`` is the
ratio of shapes/s to today's step with one thread in one process (above 1 = faster).

**Cost of the 2D target** (``--no-cost`` skips it): forward + backward of the model as I2P-MAE (guided mask,
3D + 2D targets) against the same weights run as Point-M2AE (random mask, 3D only), given the hierarchy;
memory as the activations saved for backward, the peak RSS on CPU and ``max_memory_allocated`` on CUDA.

The teacher itself is never timed: its maps come from a random-weights stand-in with the teacher's channel
count (only their shape matters for the cost). With CUDA visible, the same tables are made for the paper
config (``--cuda-only``: only those).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib
import inspect
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from i2pmae import engine  # noqa: E402
from i2pmae.config import I2PMAEConfig, load_config  # noqa: E402
from i2pmae.model import I2PMAE  # noqa: E402
from i2pmae.teacher_cache import TeacherCache, build_teacher_cache  # noqa: E402
from i2pmae.teachers import Teacher, compute_teacher_maps  # noqa: E402

TINY = REPO / "configs" / "pretrain" / "tiny.yaml"
PAPER = REPO / "configs" / "pretrain" / "paper.yaml"
BASELINE_REF = "5b6850b"  # the last commit before the speed work of issue 13: "today's step"
BASELINE_NAME = "i2pmae_today"
PATCH = 16  # stand-in teacher: one 16 x 16 patch per feature cell (224 -> 14)
MIB = 2**20
DDP_PROCESSES = 2
DDP_TIMEOUT_S = 900


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------- code versions
def load_baseline(ref: str) -> tuple[ModuleType | None, str]:
    """The ``i2pmae`` package of git ``ref``, imported as :data:`BASELINE_NAME`; (None, why) without git."""
    if BASELINE_NAME in sys.modules:
        return sys.modules[BASELINE_NAME], ""
    if "I2PMAE_BASELINE_DIR" in os.environ:  # a spawned DDP worker: the parent's copy
        root = Path(os.environ["I2PMAE_BASELINE_DIR"])
    else:
        root = Path(tempfile.mkdtemp(prefix="i2pmae-today-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    target = root / BASELINE_NAME
    if not target.is_dir():
        try:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "i2pmae"], check=True,
                                     capture_output=True).stdout
        except (OSError, subprocess.CalledProcessError) as error:
            return None, f"no baseline: git archive {ref} failed ({error})"
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        shutil.move(str(root / "i2pmae"), str(target))
    os.environ["I2PMAE_BASELINE_DIR"] = str(root)  # spawned DDP workers import the same copy
    sys.path.insert(0, str(root))
    package = importlib.import_module(BASELINE_NAME)
    for module in ("config", "model", "engine", "train", "teacher_cache", "data"):
        importlib.import_module(f"{BASELINE_NAME}.{module}")
    return package, ""


def current_package() -> ModuleType:
    import i2pmae
    import i2pmae.data
    import i2pmae.train  # noqa: F401 - loads the submodules used below

    return i2pmae


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    code: str  # "today" or "now"
    precision: str  # "fp32" or "bf16"


VARIANTS = (Variant("today", "today", "fp32"), Variant("today bf16", "today", "bf16"),
            Variant("now", "now", "fp32"), Variant("now bf16", "now", "bf16"))  # fmt: skip


class PretrainStep:
    """One pre-training step of a code version, as ``i2pmae.train.pretrain`` runs it (teacher cache)."""

    def __init__(self, package: ModuleType, cfg: I2PMAEConfig, state: dict[str, Tensor], cache: TeacherCache,
                 points: Tensor, precision: str, device: torch.device, rank: int = 0) -> None:
        self.package, self.precision, self.device = package, precision, device
        own_cfg = package.config.I2PMAEConfig.from_dict(cfg.to_dict())
        self.model = package.model.I2PMAE(own_cfg).to(device).train()
        self.model.load_state_dict(state)
        self.net = package.engine.wrap_ddp(self.model, device, **_pretrain_ddp_options(package))
        fields = {f.name: getattr(cache, f.name) for f in dataclasses.fields(cache)}
        self.cache = package.teacher_cache.TeacherCache(**fields)
        self.optimizer = package.engine._adamw(self.model, package.config.TrainConfig())
        self.gens = package.engine.Generators.create(0, rank, device)
        self.augment = package.data.ScaleAndTranslate()
        self.batch = {"points": points, "index": torch.arange(len(points))}

    def __call__(self) -> float:
        """Runs the step; returns its loss."""
        with engine.autocast(self.precision, self.device):
            out = self.package.train._pretrain_step(self.net, self.batch, self.cache, self.augment, self.gens,
                                                    self.device)
        self.package.engine._optimizer_step(self.model, self.optimizer, out.loss, None)
        return float(out.loss.detach())


def _pretrain_ddp_options(package: ModuleType) -> dict[str, bool]:
    """How ``package.train.pretrain`` wraps the model in DDP (today's code always searched for unused
    parameters; the working tree says so per driver)."""
    if "find_unused_parameters" in inspect.signature(package.engine.wrap_ddp).parameters:
        return {"find_unused_parameters": False}
    return {}


def _setup(cfg: I2PMAEConfig, batch: int, device: torch.device) -> tuple[dict, TeacherCache, Tensor]:
    """Shared initial weights, teacher cache and clouds of every variant."""
    torch.manual_seed(0)
    state = I2PMAE(cfg).state_dict()
    points = random_clouds(batch, cfg.num_points, torch.device("cpu"))
    teacher = RandomTeacher(cfg.teacher_dim).to(device)
    cache = build_teacher_cache(teacher, points.to(device), key="bench", progress=False)
    return state, cache, points


def _make_steps(cfg: I2PMAEConfig, batch: int, device: torch.device, baseline: ModuleType | None,
                names: list[str], rank: int = 0) -> dict[str, PretrainStep]:
    state, cache, points = _setup(cfg, batch, device)
    packages = {"now": current_package(), "today": baseline}
    return {v.name: PretrainStep(packages[v.code], cfg, state, cache, points, v.precision, device, rank)
            for v in VARIANTS if packages[v.code] is not None and v.name in names}  # fmt: skip


def time_steps(steps: dict[str, PretrainStep], iters: int, device: torch.device) -> dict[str, dict]:
    """Median step time of every variant, interleaved; the first step's loss from the same seed."""
    first = {}
    for name, step in steps.items():  # warm-up; the same drop-path draws for every variant
        torch.manual_seed(1)
        first[name] = step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    peaks: dict[str, float] = {}
    for _ in range(iters):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            samples[name].append(timed(step, device))
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated(device) / MIB)
    return {name: {"step_s": statistics.median(samples[name]), "first_loss": first[name],
                   **({"peak_MiB": peaks[name]} if name in peaks else {})} for name in steps}  # fmt: skip


def throughput(cfg: I2PMAEConfig, batch: int, iters: int, device: torch.device, threads: list[int],
               baseline: ModuleType | None, names: list[str]) -> list[dict]:
    """Rows of the throughput table for one process, at each thread count (CPU) or on ``device``."""
    rows = []
    for count in threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(count)
        steps = _make_steps(cfg, batch, device, baseline, names)
        for name, value in time_steps(steps, iters, device).items():
            rows.append({"variant": name, "processes": 1, "threads": count, "device": str(device), **value,
                         "shapes_s": batch / value["step_s"]})
    return rows


def _ddp_worker(rank: int, port: int, cfg_dict: dict, batch: int, iters: int, ref: str, names: list[str],
                out: str) -> None:
    """One of :data:`DDP_PROCESSES` gloo processes of one thread; rank 0 writes the medians to ``out``."""
    import torch.distributed as torch_dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", rank=rank, world_size=DDP_PROCESSES)
    baseline, _ = load_baseline(ref)
    cpu = torch.device("cpu")
    steps = _make_steps(I2PMAEConfig.from_dict(cfg_dict), batch, cpu, baseline, names, rank)
    result = time_steps(steps, iters, cpu)
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    torch_dist.destroy_process_group()


def ddp_throughput(cfg: I2PMAEConfig, batch: int, iters: int, ref: str, names: list[str]) -> list[dict]:
    """Rows for two processes of one thread each (``batch`` per process; shapes/s counts both)."""
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.json")
        mp.start_processes(_ddp_worker, args=(port, cfg.to_dict(), batch, iters, ref, names, out),
                           nprocs=DDP_PROCESSES, start_method="spawn")
        result = json.loads(Path(out).read_text())
    return [{"variant": name, "processes": DDP_PROCESSES, "threads": 1, "device": "cpu", **value,
             "shapes_s": DDP_PROCESSES * batch / value["step_s"]}
            for name, value in result.items()]  # fmt: skip


def print_throughput(title: str, rows: list[dict]) -> None:
    today = [r for r in rows if r["variant"] == "today"]
    base = next((r for r in today if r["processes"] == 1 and r["threads"] == 1), None)
    base = base or next(iter(today), None)
    print(f"--- {title}")
    print(f"  {'variant':12s} {'procs x threads':>15s} {'step s':>8s} {'shapes/s':>9s} {'x today':>8s} "
          f"{'first loss':>11s}" + ("  peak MiB" if any("peak_MiB" in r for r in rows) else ""))
    for r in rows:
        ratio = f"{r['shapes_s'] / base['shapes_s']:8.2f}" if base else f"{'-':>8s}"
        peak = f"  {r['peak_MiB']:8.0f}" if "peak_MiB" in r else ""
        print(f"  {r['variant']:12s} {r['processes']:>9d} x {r['threads']:<3d} {r['step_s']:8.3f} "
              f"{r['shapes_s']:9.2f} {ratio} {r['first_loss']:11.6f}{peak}")
    first = [r for r in rows if r["processes"] == 1 and r["threads"] == rows[0]["threads"]]
    losses = {r["variant"]: r["first_loss"] for r in first}
    if "today" in losses and "now" in losses:
        print(f"  first-step loss, now - today (fp32): {losses['now'] - losses['today']:.3g}")
    if "now bf16" in losses and "now" in losses:
        print(f"  first-step loss, now bf16 - now: {losses['now bf16'] - losses['now']:.3g}")


# --------------------------------------------------------------------------------------------- 2D-target cost
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


def cost_of_2d(cfg: I2PMAEConfig, batch: int, iters: int, device: torch.device) -> dict[str, object]:
    """Median per-batch timings and memory of I2P-MAE vs its Point-M2AE twin on ``device``."""
    torch.manual_seed(0)
    model = I2PMAE(cfg).to(device).train()
    twin = point_m2ae_twin(model).train()
    points = random_clouds(batch, cfg.num_points, device)
    maps = compute_teacher_maps(RandomTeacher(cfg.teacher_dim).to(device), points)
    hierarchy = model.build_hierarchy(points)
    generator = torch.Generator(device=device).manual_seed(0)

    def loss_of(net: I2PMAE, teacher_maps) -> Tensor:
        analysis = net.analyse(points, teacher_maps, hierarchy=hierarchy)
        enc = net.forward_encoder(analysis, net.draw_masks(analysis, generator=generator))
        return net.forward_loss(enc, net.forward_decoder(enc)).loss

    def step(net: I2PMAE, teacher_maps) -> None:
        loss_of(net, teacher_maps).backward()
        net.zero_grad(set_to_none=True)

    runs = {"hierarchy": lambda: model.build_hierarchy(points), "I2P-MAE": lambda: step(model, maps),
            "Point-M2AE": lambda: step(twin, None)}  # fmt: skip
    for fn in runs.values():  # warm-up
        fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):  # interleaved, so load changes hit both variants alike
        for name, fn in runs.items():
            samples[name].append(timed(fn, device))
    result: dict[str, object] = {"device": str(device), "batch": batch, "threads": torch.get_num_threads()}
    for name, values in samples.items():
        result[f"{name} wall s"] = statistics.median(values)
    result["ratio (wall)"] = result["I2P-MAE wall s"] / result["Point-M2AE wall s"]
    for name, net, teacher_maps in (("I2P-MAE", model, maps), ("Point-M2AE", twin, None)):
        with SavedBytes() as saved:
            loss = loss_of(net, teacher_maps)
        del loss
        result[f"{name} saved activations MiB"] = saved.total / MIB
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step(net, teacher_maps)
            result[f"{name} peak allocated MiB"] = torch.cuda.max_memory_allocated(device) / MIB
    counts = [sum(p.numel() for p in m.parameters()) for m in (model, twin)]
    result["parameters (I2P-MAE, Point-M2AE)"] = counts
    if device.type == "cpu":
        result["process peak RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def print_cost(title: str, result: dict[str, object]) -> None:
    print(f"--- {title}")
    for key, value in result.items():
        print(f"  {key:38s} {value:.3f}" if isinstance(value, float) else f"  {key:38s} {value}")


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(TINY), help="pre-training config for the CPU runs")
    parser.add_argument("--batch-size", type=int, default=32, help="per step (DDP: split between processes)")
    parser.add_argument("--iters", type=int, default=3, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts")
    parser.add_argument("--variants", nargs="+", default=[v.name for v in VARIANTS],
                        choices=[v.name for v in VARIANTS], help="which steps to time (default: all)")
    parser.add_argument("--no-ddp", action="store_true", help="skip the two-process (gloo DDP) rows")
    parser.add_argument("--no-cost", action="store_true", help="skip the I2P-MAE vs Point-M2AE cost table")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="git ref of today's step")
    parser.add_argument("--cuda-only", action="store_true", help="only the CUDA tables")
    parser.add_argument("--cuda-config", default=str(PAPER), help="config of the CUDA tables")
    parser.add_argument("--cuda-batch-size", type=int, default=64)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    baseline, why = load_baseline(args.baseline_ref)
    if baseline is None:
        print(why)
    results: dict[str, object] = {"baseline_ref": args.baseline_ref if baseline else None}
    if not args.cuda_only:
        cfg, cpu = load_config(args.config), torch.device("cpu")
        rows = throughput(cfg, args.batch_size, args.iters, cpu, args.threads, baseline, args.variants)
        if not args.no_ddp and baseline is not None:
            # The same optimiser step as the one-process rows: the batch split between the processes, as
            # `torchrun --nproc_per_node=2 ... train.batch_size=16` runs the recipe's batch of 32.
            rows += ddp_throughput(cfg, args.batch_size // DDP_PROCESSES, args.iters, args.baseline_ref,
                                   args.variants)
        print_throughput(f"pre-training step, {Path(args.config).name} on cpu, batch {args.batch_size} per "
                         f"step (split between DDP processes), today = {args.baseline_ref}", rows)
        results["cpu_throughput"] = rows
        if not args.no_cost:
            torch.set_num_threads(args.threads[0])
            results["cpu_cost"] = cost_of_2d(cfg, args.batch_size, args.iters, cpu)
            print_cost(f"2D-target cost, {Path(args.config).name} on cpu, batch {args.batch_size}",
                       results["cpu_cost"])
    if torch.cuda.is_available():
        cfg, cuda = load_config(args.cuda_config), torch.device("cuda")
        rows = throughput(cfg, args.cuda_batch_size, args.iters, cuda, [], baseline, args.variants)
        print_throughput(f"pre-training step, {Path(args.cuda_config).name} on cuda, batch "
                         f"{args.cuda_batch_size}", rows)
        results["cuda_throughput"] = rows
        if not args.no_cost:
            results["cuda_cost"] = cost_of_2d(cfg, args.cuda_batch_size, args.iters, cuda)
            print_cost(f"2D-target cost, {Path(args.cuda_config).name} on cuda", results["cuda_cost"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
