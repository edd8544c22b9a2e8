"""The seeded ablation's statistics (scripts/ablation.py): per-row intervals and paired differences."""

import pytest
from helpers import ablation_script


@pytest.fixture(scope="module")
def ablation():
    return ablation_script()


def result(svm: float, fewshot: float) -> dict:
    return {"svm_accuracy": svm, "fewshot_5way_10shot": fewshot, "commit": "abc1234", "command": "x"}


RESULTS = {
    "i2p-random": {0: result(0.93, 0.90), 1: result(0.92, 0.91), 2: result(0.94, 0.89)},
    "i2p-guided-tau1": {0: result(0.94, 0.92), 1: result(0.93, 0.93), 2: result(0.95, 0.90),
                        3: result(0.90, 0.90)},
}


def test_record_has_intervals_and_paired_differences(ablation):
    record = ablation.build_record(RESULTS, epochs=10, nproc=2)
    assert record["seeds"] == [0, 1, 2]  # seed 3 has no random-mask run to pair with
    guided = next(row for row in record["rows"] if row["name"] == "i2p-guided-tau1")
    assert set(guided["per_seed"]) == {"0", "1", "2", "3"}
    svm = guided["summary"]["svm_accuracy"]
    assert svm["mean"] == pytest.approx(0.94) and svm["n"] == 3 and svm["low"] < 0.94 < svm["high"]
    (diff,) = record["differences"]
    assert diff["row"] == "i2p-guided-tau1" and diff["minus"] == "i2p-random"
    assert diff["svm_accuracy"]["values"] == pytest.approx([0.01, 0.01, 0.01])
    assert diff["svm_accuracy"]["positive"] == 3 and diff["svm_accuracy"]["seeds_for_95"] == 2  # no spread
    assert diff["fewshot_5way_10shot"]["positive"] == 3
    text = ablation.readme_table(record)
    assert "| I2P-MAE, 2D-guided mask, τ = 1 | 94.00 ± 1.00 [" in text
    assert "| linear SVM | +1.00 [+1.00, +1.00] | 3 of 3 | shown |" in text


def test_seeds_needed_against_the_t_interval(ablation):
    from i2pmae.evaluate import mean_interval

    stat = mean_interval([0.01, 0.0, 0.02, -0.005])  # mean 0.00625, interval spans 0
    n = ablation.seeds_needed(stat)
    half = lambda k: stats_t(k - 1) * stat["std"] / k**0.5  # noqa: E731
    assert half(n) < stat["mean"] <= half(n - 1)
    assert ablation.seeds_needed({**stat, "mean": 0.0}) is None


def stats_t(dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def test_record_round_trip_and_readme(ablation, tmp_path):
    record = ablation.build_record(RESULTS, epochs=10, nproc=2)
    path = tmp_path / "ablation.json"
    ablation.save_record(path, record)
    assert ablation.load_record(path) == RESULTS  # what a later session resumes from
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.README_BEGIN}\nold\n{ablation.README_END}\nafter\n")
    ablation.write_readme(record, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert ablation.readme_table(record) in text


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
