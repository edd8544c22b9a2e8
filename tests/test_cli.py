"""End-to-end CLI on tiny synthetic data: pretrain, svm, fewshot, probe, classify, encode, inspect."""

import json

import numpy as np
import pytest
import torch
import yaml
from helpers import CLASSES, micro_config, shapes

from i2pmae.cli import main
from i2pmae.data import save_npz

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, one_thread):
    """A micro config, train/test npz files and a run pre-trained for 2 steps through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    for split, count, seed in (("train", 24, 0), ("test", 15, 1)):
        points, labels = shapes(count, seed=seed)
        save_npz(root / f"{split}.npz", points, labels, CLASSES)
    config = root / "micro.yaml"
    config.write_text(yaml.safe_dump(micro_config(train={"epochs": 1, "max_steps": 2})))
    code = main(["pretrain", "--config", str(config), "--data", str(root / "train.npz"), "--out",
                 str(root / "run"), "train.progress=false"])
    assert code == 0
    return root


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_pretrain_writes_a_run_directory(workspace):
    run = workspace / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 2 and saved["train"]["progress"] is False
    assert saved["data"].endswith("train.npz") and saved["kind"] == "pretrain"
    assert (run / "model.safetensors").is_file() and (run / "train_state.pt").is_file()
    assert len((run / "log.csv").read_text().splitlines()) == 3  # header + 2 steps


def test_svm_and_fewshot_record_their_protocol(workspace, capsys):
    ckpt, out = str(workspace / "run" / "model.safetensors"), workspace / "svm.json"
    assert main(["svm", "--checkpoint", ckpt, "--train", str(workspace / "train.npz"), "--test",
                 str(workspace / "test.npz"), "--json", str(out), "--seeds", "0", "1"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("svm: accuracy") and "over 2 seed(s)" in line and "64 points" in line
    result = json.loads(out.read_text())
    assert 0 <= result["accuracy"] <= 1 and len(result["runs"]) == 2
    assert 0 <= result["class_accuracy"] <= 1 and "mean class accuracy" in line
    protocol = result["protocol"]
    assert protocol["seeds"] == [0, 1] and protocol["scored"]["shapes"] == 15
    assert protocol["train"]["points"] == 64
    assert "CV on the fitted shapes" in protocol["selection"]

    out = workspace / "val.json"
    assert main(["svm", "--checkpoint", ckpt, "--train", str(workspace / "train.npz"),
                 "--val-fraction", "0.25", "--json", str(out)]) == 0
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["scored"]["validation_shapes"] == 6 and protocol["scored"]["split"] == "train"  # 2 of 8
    assert protocol["voting"] == "no voting"
    capsys.readouterr()
    assert main(["svm", "--checkpoint", ckpt, "--train", str(workspace / "train.npz"), "--votes", "3",
                 "--val-fraction", "0.25", "--json", str(out)]) == 0
    assert "features averaged over 3 point orders" in capsys.readouterr().out
    voting = json.loads(out.read_text())["protocol"]["voting"]
    assert voting == "features averaged over 3 point orders (seed 0)"

    out = workspace / "fewshot.json"
    assert main(["fewshot", "--checkpoint", ckpt, "--data", str(workspace / "train.npz"), "--way", "3",
                 "--shot", "2", "--queries", "3", "--folds", "4", "--json", str(out), "--votes", "2"]) == 0
    assert "3-way 2-shot accuracy" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {"mean", "std", "accs"} <= set(result) and len(result["accs"]) == 4
    assert result["protocol"]["data"]["shapes"] == 24
    assert result["protocol"]["voting"] == "features averaged over 2 point orders (seed 0)"


@pytest.fixture
def split_data(tmp_path):
    """A folder with train.npz (8 shapes of each class) and test.npz (5 spheres, 5 cubes, only 2 discs)."""
    root = tmp_path / "data"
    root.mkdir()
    points, labels = shapes(24, seed=0)
    save_npz(root / "train.npz", points, labels, CLASSES)
    points, labels = shapes(15, seed=1)
    keep = np.flatnonzero(labels != 2)[:10].tolist() + np.flatnonzero(labels == 2)[:2].tolist()
    save_npz(root / "test.npz", points[keep], labels[keep], CLASSES)
    return root


def _features(workspace, path):
    """Frozen features of one data set, extracted here as the CLI does (its defaults)."""
    from i2pmae.cli.common import load_pretrained
    from i2pmae.data import open_dataset
    from i2pmae.evaluate import extract_features

    model, _ = load_pretrained(str(workspace / "run" / "model.safetensors"), "cpu")
    return extract_features(model, open_dataset(path, num_points=model.cfg.num_points), progress=False)


def _fewshot(workspace, capsys, tmp_path, *argv):
    """Run ``fewshot`` with the workspace checkpoint: (its JSON, its last stdout line, its stderr lines
    without the progress bars)."""
    out = tmp_path / "fewshot.json"
    capsys.readouterr()
    code = main(["fewshot", "--checkpoint", str(workspace / "run" / "model.safetensors"), *argv,
                 "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # split at \n only (splitlines also splits at \r): what follows a bar's last \r is what stays on screen
    err = [kept for line in printed.err.split("\n") if (kept := line.split("\r")[-1].strip())]
    return json.loads(out.read_text()), printed.out.strip().splitlines()[-1], err


def test_fewshot_support_from_train_queries_from_test(workspace, split_data, capsys, tmp_path):
    from i2pmae.evaluate import few_shot_eval

    train, test = split_data / "train.npz", split_data / "test.npz"
    episodes = ["--way", "2", "--shot", "3", "--queries", "4", "--folds", "3", "--seed", "5"]
    result, line, err = _fewshot(workspace, capsys, tmp_path, "--data", str(test), "--support-data",
                                 str(train), *episodes)
    x_train, y_train = _features(workspace, train)
    x_test, y_test = _features(workspace, test)
    expected = few_shot_eval(x_test, y_test, support_features=x_train, support_labels=y_train, way=2,
                             shot=3, queries=4, folds=3, seed=5)
    assert result["accs"] == pytest.approx(expected["accs"]) and not result["pooled"]
    assert "2-way 3-shot accuracy" in line and "(4 queries per class, seed 5, 2 of 3 classes eligible)" in \
        line
    assert f"support from {train} [train] (24 shapes), queries from {test} [test] (12 shapes)" in line
    assert err == [f"i2pmae fewshot: warning: 1 of 3 classes excluded for lack of shapes (eligible: classes "
                   f"with >= 3 support shapes in {train} [train] and >= 4 query shapes in {test} [test]): "
                   "disc (8 support, 2 query shapes)"]
    protocol = result["protocol"]
    assert (protocol["support"]["shapes"], protocol["support"]["split"]) == (24, "train")
    assert (protocol["data"]["shapes"], protocol["data"]["split"]) == (12, "test")
    assert protocol["queries_per_class"] == 4 and protocol["eligible_classes"] == ["sphere", "cube"]
    assert protocol["excluded_classes"] == [{"class": "disc", "label": 2, "support_shapes": 8,
                                             "query_shapes": 2}]
    assert f"support from {train} [train], queries from {test} [test]" in protocol["episodes"]

    # a folder with both splits: the same episodes with --support-split
    folder, _, _ = _fewshot(workspace, capsys, tmp_path, "--data", str(split_data), "--support-split",
                            "train", *episodes)
    assert folder["accs"] == result["accs"] and folder["protocol"]["support"]["split"] == "train"
    assert folder["protocol"]["data"]["split"] == "test" and folder["protocol"]["data"]["shapes"] == 12

    # fewer queries per class: every class takes part, and nothing is reported excluded
    fewer, line, err = _fewshot(workspace, capsys, tmp_path, "--data", str(test), "--support-data",
                                str(train), "--way", "3", "--shot", "3", "--queries", "2", "--folds", "3")
    assert err == [] and "3 of 3 classes eligible" in line and fewer["protocol"]["excluded_classes"] == []


def test_fewshot_default_draws_both_from_one_split_as_before(workspace, split_data, capsys, tmp_path):
    from i2pmae.evaluate import few_shot_eval

    test = split_data / "test.npz"
    argv = ["--data", str(test), "--way", "2", "--shot", "1", "--queries", "3", "--folds", "3"]
    result, line, err = _fewshot(workspace, capsys, tmp_path, *argv)
    x, y = _features(workspace, test)
    assert result["accs"] == pytest.approx(few_shot_eval(x, y, way=2, shot=1, queries=3, folds=3)["accs"])
    assert result["pooled"] and result["protocol"]["support"] == result["protocol"]["data"]
    assert f"support and queries from {test} [test] (12 shapes)" in line and "2 of 3 classes eligible" in line
    assert err == ["i2pmae fewshot: warning: 1 of 3 classes excluded for lack of shapes (eligible: classes "
                   f"with >= 4 shapes in {test} [test]): disc (2 shapes)"]
    again, _, _ = _fewshot(workspace, capsys, tmp_path, *argv)
    assert again["accs"] == result["accs"]  # the same seed gives the same folds


def test_fewshot_refuses_a_support_set_that_is_the_queries_or_names_other_classes(workspace, split_data,
                                                                                  capsys):
    ckpt = str(workspace / "run" / "model.safetensors")
    base = ["fewshot", "--checkpoint", ckpt, "--way", "2", "--shot", "1"]
    # a single file is read whole whatever the split, so --support-split alone would reuse the queries
    assert main([*base, "--data", str(split_data / "test.npz"), "--support-split", "train"]) == 2
    assert "the support set and the queries are the same shapes" in one_line_error(capsys)
    points, labels = shapes(6, seed=2)
    save_npz(split_data / "other.npz", points, labels, ("a", "b", "c"))
    assert main([*base, "--data", str(split_data / "test.npz"), "--support-data",
                 str(split_data / "other.npz")]) == 2
    assert "name different classes" in one_line_error(capsys)


def test_probe_classify_encode_and_inspect(workspace, capsys, tmp_path):
    ckpt = workspace / "run" / "model.safetensors"
    assert main(["probe", "--checkpoint", str(ckpt), "--train", str(workspace / "train.npz")]) == 0
    probe = workspace / "run" / "model_probe.safetensors"
    assert probe.is_file()
    shape = tmp_path / "shape.npy"
    np.save(shape, shapes(1, seed=5)[0][0])
    capsys.readouterr()
    assert main(["classify", str(shape), "--checkpoint", str(ckpt), "--top-k", "2",
                 "--json", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "linear probe" in printed[0] and len(printed) == 3
    ranked = json.loads((tmp_path / "c.json").read_text())["top_k"]
    assert [name for name, _ in ranked][0] in CLASSES and ranked[0][1] >= ranked[1][1]

    assert main(["encode", str(shape), "--checkpoint", str(ckpt), "--out", str(tmp_path / "f.npy")]) == 0
    feature = np.load(tmp_path / "f.npy")
    assert feature.shape == (micro_config()["model"]["encoder_dims"][-1],) and feature.dtype == np.float32

    capsys.readouterr()
    assert main(["checkpoint", "inspect", str(ckpt)]) == 0
    text = capsys.readouterr().out
    assert "I2PMAE" in text and "teacher: efficientnet-lite0" in text and "h_encoder" in text
    assert "classes (3): sphere, cube, disc" in text
    assert main(["checkpoint", "inspect", str(probe)]) == 0
    assert "linear probe, 3 classes" in capsys.readouterr().out


def test_finetune_from_the_pretrained_checkpoint(workspace, capsys):
    config = workspace / "finetune.yaml"
    train = {"epochs": 1, "warmup_epochs": 0, "batch_size": 4, "progress": False}
    config.write_text(yaml.safe_dump({"train": train}))
    out = workspace / "ft.json"
    assert main(["finetune", "--config", str(config), "--data", str(workspace / "train.npz"), "--out",
                 str(workspace / "ft"), "--pretrained", str(workspace / "run" / "model.safetensors"),
                 "--test", str(workspace / "test.npz"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finetune: best epoch 0 of 1" in printed and "test accuracy" in printed
    result = json.loads(out.read_text())
    assert 0 <= result["accuracy"] <= 1 and result["protocol"]["selection"] == "best validation accuracy"
    saved = yaml.safe_load((workspace / "ft" / "config.yaml").read_text())
    assert saved["model"]["encoder_dims"] == micro_config()["model"]["encoder_dims"]  # from the checkpoint


def test_checkpoint_convert_round_trip_and_mismatch(workspace, capsys, tmp_path):
    from safetensors.torch import load_file

    state = {f"module.{k}": v for k, v in load_file(workspace / "run" / "model.safetensors").items()}
    official = tmp_path / "official.pth"
    torch.save({"base_model": state}, official)
    config = workspace / "micro.yaml"
    out = tmp_path / "converted.safetensors"
    assert main(["checkpoint", "convert", str(official), str(out), "--config", str(config)]) == 0
    assert load_file(out).keys() == load_file(workspace / "run" / "model.safetensors").keys()
    capsys.readouterr()
    assert main(["checkpoint", "convert", str(official), str(out), "--config", str(config),
                 "encoder_dims=[8,32,64]"]) == 2
    message = one_line_error(capsys)
    assert "does not match the model" in message and "shape mismatches" in message


@pytest.mark.parametrize("argv, message", [
    (["svm", "--checkpoint", "missing.safetensors", "--train", "a", "--test", "b"], "checkpoint not found"),
    (["classify", "nowhere.ply", "--checkpoint", "missing.safetensors"], "not found"),
    (["pretrain", "--config", "missing.yaml", "--data", "x.npz"], "missing.yaml"),
    (["svm", "--train", "a", "--test", "b", "--val-fraction", "0.2"], "exactly one of --test"),
])
def test_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in one_line_error(capsys)


def test_bad_override_and_resume_errors(workspace, capsys):
    base = ["pretrain", "--config", str(workspace / "micro.yaml"), "--data", str(workspace / "train.npz")]
    assert main([*base, "--out", str(workspace / "other"), "nonsense=1"]) == 2
    assert "unknown config key 'nonsense'" in one_line_error(capsys)
    assert main([*base, "--out", str(workspace / "run")]) == 2
    assert "--resume" in one_line_error(capsys)


def test_data_check_reports_missing_files(tmp_path, capsys, workspace):
    assert main(["data", "check", str(tmp_path / "modelnet40_ply_hdf5_2048")]) == 1
    out = capsys.readouterr().out
    assert "NOT OK" in out and "How to get the data" in out
    assert main(["data", "check", str(workspace / "train.npz")]) == 0
    assert "OK" in capsys.readouterr().out


def _probe_file(path, weight: torch.Tensor):
    from i2pmae.evaluate import LinearProbe, save_probe

    save_probe(LinearProbe(weight, torch.zeros(len(CLASSES)), list(CLASSES)), path)
    return path


def test_classify_refuses_non_finite_probes_and_probabilities(workspace, capsys, tmp_path, monkeypatch):
    from i2pmae.evaluate import LinearProbe

    ckpt, width = str(workspace / "run" / "model.safetensors"), micro_config()["model"]["encoder_dims"][-1]
    shape = tmp_path / "shape.npy"
    np.save(shape, shapes(1, seed=5)[0][0])
    nan_probe = _probe_file(tmp_path / "nan_probe.safetensors", torch.full((len(CLASSES), width), torch.nan))
    assert main(["classify", str(shape), "--checkpoint", ckpt, "--probe", str(nan_probe)]) == 2
    out, err = capsys.readouterr()
    assert "nan" not in out.lower() and "tensor 'weight' holds" in err and len(err.strip().splitlines()) == 1
    good_probe = _probe_file(tmp_path / "probe.safetensors", torch.ones(len(CLASSES), width))
    nan_rows = torch.full((1, len(CLASSES)), torch.nan)
    monkeypatch.setattr(LinearProbe, "predict_proba", lambda self, features: nan_rows)
    assert main(["classify", str(shape), "--checkpoint", ckpt, "--probe", str(good_probe)]) == 2
    out, err = capsys.readouterr()
    assert "%" not in out and len(err.strip().splitlines()) == 1
    assert "gave NaN or infinite probabilities" in err


def test_svm_refuses_a_checkpoint_with_nan_weights(workspace, capsys, tmp_path):
    from i2pmae.checkpoints import load_checkpoint, save_checkpoint

    model, metadata = load_checkpoint(workspace / "run" / "model.safetensors")
    key = next(k for k, v in model.state_dict().items() if v.is_floating_point())
    with torch.no_grad():
        model.state_dict()[key].view(-1)[0] = torch.nan
    bad = save_checkpoint(tmp_path / "nan.safetensors", model, metadata=metadata)
    assert main(["svm", "--checkpoint", str(bad), "--train", str(workspace / "train.npz"),
                 "--test", str(workspace / "test.npz")]) == 2
    assert f"tensor '{key}' holds 1 NaN" in one_line_error(capsys)


def test_the_data_set_memory_limit_in_data_check_and_svm(workspace, capsys, tmp_path):
    import h5py

    bomb = tmp_path / "fill_value.h5"
    with h5py.File(bomb, "w") as f:  # 4.6 GiB when read, a few kB on disk
        f.create_dataset("data", shape=(200_000, 2048, 3), dtype="f4", chunks=(64, 2048, 3),
                         compression="gzip")
        f.create_dataset("label", shape=(200_000,), dtype="i8", chunks=True, compression="gzip")
    assert main(["data", "check", str(bomb)]) == 1
    assert "over the limit of 2 GiB per data set" in capsys.readouterr().out
    assert main(["data", "check", str(workspace / "train.npz"), "--max-gib", "1e-6"]) == 1
    assert "over the limit of 1e-06 GiB" in capsys.readouterr().out
    assert main(["svm", "--checkpoint", str(workspace / "run" / "model.safetensors"), "--max-gib", "1e-6",
                 "--train", str(workspace / "train.npz"), "--test", str(workspace / "test.npz")]) == 2
    message = one_line_error(capsys)
    assert "train.npz: its arrays take" in message and "--max-gib on the command line" in message
    for command in ("pretrain", "finetune"):  # the training commands open their data with the same limit
        out = tmp_path / f"{command}-limited"
        assert main([command, "--config", str(workspace / "micro.yaml"), "--data",
                     str(workspace / "train.npz"), "--out", str(out), "--max-gib", "1e-6"]) == 2
        assert "over the limit of 1e-06 GiB" in one_line_error(capsys)
        assert not (out / "train_state.pt").exists()


@pytest.mark.parametrize("command", [["svm", "--train", "none.npz", "--test", "none.npz"],
                                     ["fewshot", "--data", "none.npz", "--way", "2", "--shot", "1"]])
def test_votes_out_of_range_are_refused_when_parsing(command, capsys):
    from i2pmae.evaluate import MAX_VOTES

    out_of_range = f"votes must be from 1 to {MAX_VOTES} (point orders per shape), got"
    for votes, message in (("1000000000", f"{out_of_range} 1000000000"), ("65", f"{out_of_range} 65"),
                           ("0", f"{out_of_range} 0"), ("-1", f"{out_of_range} -1"),
                           ("many", "expected a whole number, got 'many'")):
        with pytest.raises(SystemExit) as exit_:  # before the checkpoint or the data are opened
            main([*command, "--votes", votes])
        assert exit_.value.code == 2
        last = capsys.readouterr().err.splitlines()[-1]
        assert last == f"i2pmae {command[0]}: error: argument --votes: {message}"
    with pytest.raises(SystemExit):
        main([command[0], "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"1 to {MAX_VOTES}; 1 (default) is the official protocol" in help_text


def _damaged_checkpoint(path):
    from helpers import SMALL_MODEL

    from i2pmae.checkpoints import save_checkpoint
    from i2pmae.model import I2PMAE, I2PMAEConfig

    model = I2PMAE(I2PMAEConfig(**SMALL_MODEL))
    with torch.no_grad():
        model.state_dict()["mask_token"].view(-1)[:3] = torch.nan
        model.state_dict()["decoder_norm.weight"][0] = torch.inf
    return save_checkpoint(path, model, metadata={"kind": "pretrained"})


def test_checkpoint_inspect_names_every_non_finite_tensor_and_fails(tmp_path, capsys):
    from i2pmae.checkpoints import checkpoint_info
    from i2pmae.evaluate import LinearProbe, save_probe

    path = _damaged_checkpoint(tmp_path / "diverged.safetensors")
    assert main(["checkpoint", "inspect", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: I2PMAE") and "  kind: pretrained" in out  # the header still shows
    assert out[-3:] == [
        f"{path}: DAMAGED: 2 of {checkpoint_info(path)['num_tensors']} tensors hold NaN or infinite "
        "values (a diverged run or a corrupt file); loading it is refused:",
        "  decoder_norm.weight: 1 of 32 values not finite",
        "  mask_token: 3 of 64 values not finite",
    ]
    weight, bias = torch.ones(len(CLASSES), 4), torch.tensor([0.0, -torch.inf, 0.0])  # -inf: never predicted
    save_probe(LinearProbe(weight, bias, list(CLASSES)), tmp_path / "probe.safetensors")
    assert main(["checkpoint", "inspect", str(tmp_path / "probe.safetensors")]) == 0
    weight[1, 2] = torch.nan
    save_probe(LinearProbe(weight, bias, list(CLASSES)), tmp_path / "probe.safetensors")
    assert main(["checkpoint", "inspect", str(tmp_path / "probe.safetensors")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "  weight: 1 of 12 values not finite"


def test_checkpoint_inspect_refuses_a_pth_and_broken_files_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("inspect must never unpickle"))
    pth = tmp_path / "official.pth"
    torch.save({"base_model": {"mask_token": torch.zeros(1, 4)}}, pth)
    assert main(["checkpoint", "inspect", str(pth)]) == 2
    message = one_line_error(capsys)
    assert message.startswith(f"i2pmae checkpoint: error: {pth}: a zip archive as torch.save writes")
    assert "not a safetensors checkpoint" in message
    dst = tmp_path / "official.safetensors"
    assert message.endswith(f"i2pmae checkpoint convert {pth} {dst} --config configs/pretrain/paper.yaml")
    good = _damaged_checkpoint(tmp_path / "cut.safetensors").read_bytes()
    for content in (b"", good[:4], good[: len(good) // 2], b"not a checkpoint at all"):
        (tmp_path / "cut.safetensors").write_bytes(content)
        assert main(["checkpoint", "inspect", str(tmp_path / "cut.safetensors")]) == 2
        assert "cut.safetensors: not a safetensors checkpoint, or a truncated one (" in one_line_error(capsys)


def test_data_check_fails_on_a_stray_label_in_unnamed_h5(tmp_path, capsys):
    import h5py

    with h5py.File(tmp_path / "stray.h5", "w") as f:  # labels 0..4 and one 99: 100 classes inferred
        f["data"], f["label"] = shapes(6, num_points=32)[0], np.array([0, 1, 2, 3, 4, 99])
    assert main(["data", "check", str(tmp_path / "stray.h5")]) == 1
    out = capsys.readouterr().out
    assert "problem: file labels: only 6 of the 100 classes 0..99 have shapes" in out and "NOT OK" in out
