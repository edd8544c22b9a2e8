"""The seeded ablation's statistics (scripts/ablation.py): per-row intervals and paired differences."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_has_intervals_and_paired_differences(ablation):
    per_seed = {
        "i2p-random": {0: {"svm_accuracy": 0.93, "fewshot_5way_10shot": 0.90},
                       1: {"svm_accuracy": 0.92, "fewshot_5way_10shot": 0.91},
                       2: {"svm_accuracy": 0.94, "fewshot_5way_10shot": 0.89}},
        "i2p-guided-tau1": {0: {"svm_accuracy": 0.94, "fewshot_5way_10shot": 0.92},
                            1: {"svm_accuracy": 0.93, "fewshot_5way_10shot": 0.93},
                            2: {"svm_accuracy": 0.95, "fewshot_5way_10shot": 0.90}},
    }
    summary = ablation.summarise(per_seed, [0, 1, 2])
    svm = summary["i2p-guided-tau1"]["svm_accuracy"]
    assert svm["mean"] == pytest.approx(0.94) and svm["n"] == 3 and svm["low"] < 0.94 < svm["high"]
    diff = summary["i2p-guided-tau1"]["minus_random"]["svm_accuracy"]
    assert diff["values"] == pytest.approx([0.01, 0.01, 0.01]) and diff["std"] == pytest.approx(0, abs=1e-12)
    assert "minus_random" not in summary["i2p-random"]
    text = ablation.table(summary)
    assert "| i2p-guided-tau1 | 94.00 ± 1.00 [" in text and text.count("\n") == 3


def test_every_row_is_a_valid_run_configuration(ablation):
    from i2pmae.config import load_run_config

    for row, overrides in ablation.ROWS.items():
        if overrides is not None:
            model_cfg, _ = load_run_config(ablation.CONFIG, overrides)
            assert model_cfg.target_2d == ("target_2d=true" in " ".join(overrides)), row


def test_pretraining_on_several_processes_splits_the_batch(ablation):
    import argparse

    args = argparse.Namespace(nproc=2, torchrun="torchrun", i2pmae="i2pmae")
    launch, overrides = ablation.pretrain_command(args)
    assert launch[:2] == ["torchrun", "--nproc_per_node=2"] and launch[-1] == "pretrain"
    assert overrides == ["train.batch_size=16"]  # tiny.yaml's batch of 32 per optimiser step
    single = argparse.Namespace(nproc=1, i2pmae="i2pmae")
    assert ablation.pretrain_command(single) == (["i2pmae", "pretrain"], [])
    with pytest.raises(SystemExit, match="does not divide"):
        ablation.pretrain_command(argparse.Namespace(nproc=3, torchrun="torchrun", i2pmae="i2pmae"))
