"""DDP pre-training via ``torchrun --nproc_per_node=2`` on CPU (gloo): both ranks end with the same weights.

Run as a script, this file is the worker each process executes (see :func:`worker`).
"""

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER_TIMEOUT_S = 240
NUM_PROCESSES = 2


def state_hash(state_dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def worker(kind: str, data: str, out: str) -> None:
    """Pre-train the micro model (guided masks, 2D target, teacher cache), or fine-tune it from scratch
    (lower-level encoder norms get no gradient there); write this rank's weight hash and step."""
    import torch
    from helpers import GUIDED, FakeTeacher, micro_config

    from i2pmae import dist, engine, teacher_cache
    from i2pmae import train as tr
    from i2pmae.config import load_run_config

    torch.set_num_threads(1)
    teacher_cache._load_teacher = lambda *args, **kwargs: FakeTeacher()
    train = {"epochs": 2, "val_fraction": 0.25}  # fine-tuning: 18 of 24 shapes train
    model_cfg, train_cfg = load_run_config(micro_config(model=GUIDED, train=train))
    captured = {}
    real_save = engine.Loop.save

    def save_and_capture(loop):  # the weights every rank holds after each save
        real_save(loop)
        captured["hash"] = state_hash(loop.model.state_dict())

    engine.Loop.save = save_and_capture
    if kind == "pretrain":
        result = tr.pretrain(model_cfg, train_cfg, data, Path(out) / "run")
    else:
        result = tr.finetune(model_cfg, train_cfg, data, Path(out) / "run")
    Path(out, f"rank{dist.get_rank()}.txt").write_text(f"{captured['hash']} {result.step}")
    dist.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_workers(kind: str, data: Path, out: Path) -> tuple[list[list[str]], str]:
    """Launch :func:`worker` in NUM_PROCESSES gloo processes; each rank's [weight hash, step], and stderr."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={NUM_PROCESSES}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", __file__, kind, str(data), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[:6000]
    return [(out / f"rank{r}.txt").read_text().split() for r in range(NUM_PROCESSES)], proc.stderr


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    import torch
    from helpers import write_data

    from i2pmae import engine
    from i2pmae import train as tr
    from i2pmae.checkpoints import load_checkpoint

    data = write_data(tmp_path / "d.npz", num_shapes=16)  # 2 ranks x batch 4: 2 steps per epoch
    reports, log = _run_workers("pretrain", data, tmp_path)
    assert reports[0] == reports[1] and reports[0][1] == "4"
    assert log.count("steps/epoch") == 1, log  # the run's header line: logged by rank 0 only
    model, meta = load_checkpoint(tmp_path / "run" / tr.PRETRAINED_FILE)
    assert state_hash(model.state_dict()) == reports[0][0]
    assert meta["world_size"] == NUM_PROCESSES
    state = torch.load(tmp_path / "run" / engine.STATE_FILE, weights_only=True)
    assert len(state["rng"]) == NUM_PROCESSES  # every rank's generators, and they differ
    assert not torch.equal(state["rng"][0]["mask"], state["rng"][1]["mask"])
    rows = engine.read_log(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss_2d"] > 0


@pytest.mark.slow
def test_two_cpu_processes_fine_tune_with_parameters_outside_the_loss(tmp_path):
    """The classifier's lower-level encoder norms never reach the loss: DDP (static graph) must still
    step, and both ranks must end with the weights in ``last.safetensors``."""
    from helpers import write_data

    from i2pmae import train as tr
    from i2pmae.checkpoints import load_checkpoint

    data = write_data(tmp_path / "d.npz", num_shapes=24)  # 18 train shapes: 2 steps per epoch on 2 x 4
    reports, _ = _run_workers("finetune", data, tmp_path)
    assert reports[0] == reports[1] and reports[0][1] == "4"
    model, meta = load_checkpoint(tmp_path / "run" / tr.LAST_FILE)
    assert state_hash(model.state_dict()) == reports[0][0]


if __name__ == "__main__":
    worker(*sys.argv[1:4])
