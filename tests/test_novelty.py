"""The novelty score: its formulas against numpy, its threshold, its file, and leave-classes-out selection."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from i2pmae.novelty import (
    METHODS,
    compare_methods,
    fit_novelty,
    fit_scorer,
    load_novelty,
    novelty_path,
    save_novelty,
)

DIM, PER_CLASS = 6, 120


def clusters(num_classes: int, seed: int = 0, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes around distinct centres (fixed by ``seed``; ``draw`` picks the sample):
    features (num_classes * PER_CLASS, DIM) and labels."""
    centres = np.random.default_rng(seed).normal(scale=6.0, size=(num_classes, DIM))
    labels = np.repeat(np.arange(num_classes), PER_CLASS)
    features = centres[labels] + np.random.default_rng([seed, draw]).normal(size=(len(labels), DIM))
    return features.astype(np.float32), labels


def test_mahalanobis_scores_equal_a_numpy_reference():
    x, y = clusters(3)
    model = fit_scorer(x, y, method="relative_mahalanobis")
    query = np.random.default_rng(1).normal(scale=4.0, size=(5, DIM))
    z = (query - model.mean.numpy()) / model.scale.numpy()
    to_class = np.stack([np.einsum("nc,cd,nd->n", z - m, model.precision.numpy(), z - m)
                         for m in model.references.numpy()], 1)  # (5, 3)
    zb = z - model.background.numpy()
    background = np.einsum("nc,cd,nd->n", zb, model.background_precision.numpy(), zb)
    expected = to_class.min(1) - background
    np.testing.assert_allclose(model.score(torch.from_numpy(query)).numpy(), expected, rtol=1e-9)
    plain = fit_scorer(x, y, method="mahalanobis")
    np.testing.assert_allclose(plain.score(torch.from_numpy(query)).numpy() ** 2, to_class.min(1), rtol=1e-9)


def test_knn_score_is_the_cosine_distance_to_the_kth_neighbour():
    x, y = clusters(2)
    model = fit_scorer(x, y, method="knn", k=3)
    query = x[:4] + 0.1
    z = (query - model.mean.numpy()) / model.scale.numpy()
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    distances = np.sort(1 - z @ model.references.numpy().T, axis=1)[:, 2]
    np.testing.assert_allclose(model.score(torch.from_numpy(query)).numpy(), distances, rtol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_threshold_calls_the_quantile_of_validation_shapes_novel_and_far_shapes_novel(method):
    x, y = clusters(4)
    model = fit_novelty(x, y, method=method, quantile=0.9)
    assert model.info["validation_shapes"] == 96
    assert model.info["validation_novel_rate"] == pytest.approx(0.1, abs=0.02)
    fresh, _ = clusters(4, draw=1)  # the same classes: new shapes from the same Gaussians
    far = np.full((3, DIM), 40.0, dtype=np.float32)
    verdicts = model.assess(torch.from_numpy(far))
    assert all(not v["known"] and v["score"] > v["threshold"] for v in verdicts)
    known = np.mean([v["known"] for v in model.assess(torch.from_numpy(fresh))])
    assert known > 0.8


def test_leave_classes_out_comparison_ranks_a_separable_problem_near_one():
    x, y = clusters(5)
    table = compare_methods(x, y, candidates=[("relative_mahalanobis", 0), ("knn", 5)], folds=3)
    assert set(table) == {"relative_mahalanobis", "knn k=5"}
    assert all(row["auroc_mean"] > 0.95 for row in table.values())
    assert all(len(fold) == 2 for fold in table["knn k=5"]["held_out_classes"])
    with pytest.raises(ValueError, match="more than 2 classes"):
        compare_methods(x[y < 2], y[y < 2], candidates=[("knn", 1)])


def test_the_file_round_trips_and_bad_files_are_refused(tmp_path):
    x, y = clusters(3)
    model = fit_novelty(x, y)
    path = novelty_path(tmp_path / "model.safetensors")
    assert path.name == "model_novelty.safetensors"
    save_novelty(model, path)
    loaded = load_novelty(path)
    query = torch.from_numpy(x[:7])
    assert torch.equal(loaded.score(query), model.score(query)) and loaded.threshold == model.threshold
    assert loaded.info == model.info
    tensors = {"mean": model.mean.clone(), "scale": model.scale, "references": model.references}
    tensors["mean"][2] = float("nan")
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata={"format": "i2pmae-novelty-v1",
              "method": "mahalanobis", "k": "1", "threshold": "1.0"})
    with pytest.raises(ValueError, match="tensor .mean. holds 1 NaN or infinite"):
        load_novelty(tmp_path / "nan.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an i2pmae novelty model"):
        load_novelty(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_novelty(tmp_path / "missing.safetensors")


def test_cli_fits_the_novelty_model_and_classify_reports_it(tmp_path, capsys, one_thread):
    import json

    from helpers import CLASSES, MICRO_MODEL, shapes

    from i2pmae.checkpoints import save_checkpoint
    from i2pmae.cli import main
    from i2pmae.config import I2PMAEConfig
    from i2pmae.data import save_npz
    from i2pmae.model import I2PMAE

    points, labels = shapes(36, num_points=MICRO_MODEL["num_points"])
    save_npz(tmp_path / "train.npz", points, labels, CLASSES)
    checkpoint = save_checkpoint(tmp_path / "micro.safetensors", I2PMAE(I2PMAEConfig(**MICRO_MODEL)).eval())
    common = ["--checkpoint", str(checkpoint), "--train", str(tmp_path / "train.npz")]
    assert main(["probe", *common]) == 0
    assert main(["novelty", *common, "--compare", "--json", str(tmp_path / "novelty.json")]) == 0
    out = capsys.readouterr().out
    assert "leave-2-classes-out AUROC" in out and "relative_mahalanobis" in out
    assert novelty_path(checkpoint).is_file()
    record = json.loads((tmp_path / "novelty.json").read_text())
    assert record["info"]["fitted_shapes"] + record["info"]["validation_shapes"] == 36
    far = tmp_path / "far.npy"
    np.save(far, (np.random.default_rng(0).normal(size=(200, 3)) * [1, 1, 30]).astype(np.float32))
    report = tmp_path / "classify.json"
    assert main(["classify", str(far), "--checkpoint", str(checkpoint), "--json", str(report)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    verdict = json.loads(report.read_text())["novelty"]
    assert line.startswith("novelty: score") and set(verdict) == {"score", "known", "threshold"}
    assert ("-> known:" in line) == verdict["known"] and ("-> novel:" in line) != verdict["known"]
