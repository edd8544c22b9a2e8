"""Evaluation protocols: SVM chosen on train only, few-shot episodes, linear probe, voting, features."""

import numpy as np
import pytest
import torch

from i2pmae import evaluate as ev


def _blobs(num_classes=4, per_class=30, dim=8, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 3
    labels = np.repeat(np.arange(num_classes), per_class)
    feats = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return feats.astype(np.float32), labels


def test_svm_separable_blobs_reach_full_accuracy():
    x, y = _blobs()
    xt, yt = x + 0.01, y  # the same blobs, shifted a little
    result = ev.linear_svm_eval(x, y, xt, yt, seed=0)
    assert result["accuracy"] == 1.0 and result["class_accuracy"] == 1.0
    assert result["C"] in ev.SVM_C_GRID and isinstance(result["standardize"], bool)
    assert len(result["scores"]) == 2 * len(ev.SVM_C_GRID)


def test_mean_class_accuracy_against_hand_counts():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 0, 1, 0, 1, 2])  # class 0: 3/4, class 1: 1/2, class 2: 1/1
    assert ev.mean_class_accuracy(predicted, labels) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert (predicted == labels).mean() == pytest.approx(5 / 7)  # overall accuracy weighs classes by count
    with pytest.raises(ValueError, match="equal non-empty"):
        ev.mean_class_accuracy(predicted[:3], labels)
    with pytest.raises(ValueError, match="equal non-empty"):
        ev.mean_class_accuracy(np.array([]), np.array([]))


def test_svm_choice_never_looks_at_test():
    x, y = _blobs(spread=2.0)
    xt, yt = _blobs(spread=2.0, seed=3)
    a = ev.linear_svm_eval(x, y, xt, yt)
    b = ev.linear_svm_eval(x, y, xt, np.random.default_rng(0).permutation(yt))
    assert (a["C"], a["standardize"], a["cv_accuracy"]) == (b["C"], b["standardize"], b["cv_accuracy"])
    assert a["accuracy"] != b["accuracy"]


def test_svm_selection_is_the_argmax_of_a_brute_force_cv():
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    x, y = _blobs(spread=2.5, per_class=20)
    choice = ev.select_svm(x, y, c_grid=(0.001, 1.0), cv_folds=3, seed=0)
    brute = {}
    for std in (False, True):
        for c in (0.001, 1.0):
            accs = []
            for tr, va in StratifiedKFold(3, shuffle=True, random_state=0).split(x, y):
                xtr, xva = x[tr], x[va]
                if std:
                    sc = StandardScaler().fit(xtr)
                    xtr, xva = sc.transform(xtr), sc.transform(xva)
                clf = LinearSVC(C=c, max_iter=ev.SVM_MAX_ITER, random_state=0).fit(xtr, y[tr])
                accs.append((clf.predict(xva) == y[va]).mean())
            brute[f"C={c:g},std={std}"] = float(np.mean(accs))
    assert choice["scores"] == pytest.approx(brute)
    assert choice["cv_accuracy"] == pytest.approx(max(brute.values()))


def test_svm_rejects_bad_input():
    x, y = _blobs()
    with pytest.raises(ValueError, match="width"):
        ev.linear_svm_eval(x, y, x[:, :4], y)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ev.linear_svm_eval(bad, y, x, y)
    with pytest.raises(ValueError, match="at least 2"):
        ev.select_svm(x[:31], y[:31])  # class 1 has a single shape


def _manual_episodes(x, y, way, shot, queries, folds, seed, c):
    classes, counts = np.unique(y, return_counts=True)
    eligible = classes[counts >= shot + queries]
    out = []
    for f in range(folds):
        rng = np.random.default_rng([seed, f])
        chosen = rng.choice(eligible, size=way, replace=False)
        picks = [rng.choice(np.flatnonzero(y == k), size=shot + queries, replace=False) for k in chosen]
        s = np.concatenate([p[:shot] for p in picks])
        q = np.concatenate([p[shot:] for p in picks])
        assert not set(s) & set(q)
        clf = ev._svm(c, True, 0).fit(x[s], y[s])
        out.append((clf.predict(x[q]) == y[q]).mean())
    return out


def test_few_shot_follows_the_documented_protocol():
    x, y = _blobs(num_classes=6, per_class=25, spread=3.0)
    res = ev.few_shot_eval(x, y, way=3, shot=2, folds=4, queries=5, seed=7)
    ref = _manual_episodes(x, y, 3, 2, 5, 4, 7, ev.FEW_SHOT_C)
    assert res["accs"] == pytest.approx(ref)
    assert res["mean"] == pytest.approx(np.mean(ref)) and res["std"] == pytest.approx(np.std(ref))
    assert (res["way"], res["shot"], res["folds"], res["queries"], res["seed"]) == (3, 2, 4, 5, 7)
    other = ev.few_shot_eval(x, y, way=3, shot=2, folds=4, queries=5, seed=8)
    assert other["accs"] != res["accs"]


def test_few_shot_separable_is_perfect_and_errors_are_clear():
    x, y = _blobs(num_classes=5, per_class=31, spread=0.05)
    res = ev.few_shot_eval(x, y, way=5, shot=10)
    assert res["mean"] == 1.0 and res["std"] == 0.0 and len(res["accs"]) == ev.FEW_SHOT_FOLDS
    with pytest.raises(ValueError, match="needs 6 classes"):
        ev.few_shot_eval(x, y, way=6, shot=10)
    with pytest.raises(ValueError, match="needs 5 classes"):
        ev.few_shot_eval(x, y, way=5, shot=12)  # 12 + 20 > 31 shapes per class
    with pytest.raises(ValueError, match="way"):
        ev.few_shot_eval(x, y, way=1, shot=1)


def test_few_shot_default_numbers_are_unchanged():
    """Pinned from the single-split implementation before a separate support set existed."""
    x, y = _blobs(num_classes=6, per_class=25, spread=3.0)
    res = ev.few_shot_eval(x, y, way=3, shot=2, folds=4, queries=5, seed=7)
    assert res["accs"] == pytest.approx([11 / 15, 12 / 15, 8 / 15, 9 / 15])
    assert res["pooled"] and res["eligible"] == list(range(6)) and res["excluded"] == []


class _RecordingSvm:
    """Stands in for the SVM: records what it is fitted on and asked about; predicts the label coded in
    feature column 1."""

    def __init__(self, log: list) -> None:
        self.log = log

    def fit(self, x, y):
        self.log.append(("fit", x.copy(), y.copy()))
        return self

    def predict(self, x):
        self.log.append(("predict", x.copy()))
        return x[:, 1].astype(np.int64)


def _coded(counts: dict[int, int], sign: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (id, label) of a set with ``counts[label]`` shapes; ids are 1, 2, ... times ``sign``."""
    labels = np.repeat(list(counts), list(counts.values()))
    ids = sign * np.arange(1, len(labels) + 1)
    return np.stack([ids, labels], axis=1).astype(np.float32), labels


def _recorded_episodes(monkeypatch, support, query, **kwargs):
    log = []
    monkeypatch.setattr(ev, "_svm", lambda c, standardize, seed: _RecordingSvm(log))
    res = ev.few_shot_eval(*query, support_features=support[0], support_labels=support[1], **kwargs)
    fits = [entry[1:] for entry in log if entry[0] == "fit"]  # (support features, labels) per episode
    predicts = [entry[1] for entry in log if entry[0] == "predict"]  # query features per episode
    return res, fits, predicts


def test_few_shot_draws_support_from_the_support_set_and_queries_from_the_query_set(monkeypatch):
    support = _coded({0: 12, 1: 12, 2: 12, 3: 12}, sign=1)  # ids > 0
    query = _coded({0: 7, 1: 7, 2: 7, 3: 7}, sign=-1)  # ids < 0
    res, fits, predicts = _recorded_episodes(monkeypatch, support, query, way=3, shot=4, queries=6,
                                             folds=5, seed=1)
    assert len(fits) == len(predicts) == 5 and res["accs"] == [1.0] * 5  # queries keep their own labels
    assert not res["pooled"] and res["excluded"] == [] and res["eligible"] == [0, 1, 2, 3]
    for (xs, ys), xq in zip(fits, predicts, strict=True):
        assert (xs[:, 0] > 0).all() and (xq[:, 0] < 0).all()  # never the other set
        assert (xs[:, 1] == ys).all()  # the labels fitted are those of the support shapes drawn
        assert len(set(xs[:, 0])) == len(xs) == 3 * 4 and len(set(xq[:, 0])) == len(xq) == 3 * 6
        assert np.unique(ys, return_counts=True)[1].tolist() == [4, 4, 4]
        assert set(np.unique(xq[:, 1])) == set(np.unique(ys))  # queries of the chosen classes only
    _, fits_again, predicts_again = _recorded_episodes(monkeypatch, support, query, way=3, shot=4,
                                                       queries=6, folds=5, seed=1)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(fits, fits_again, strict=True))  # same seed
    assert all(np.array_equal(a, b) for a, b in zip(predicts, predicts_again, strict=True))
    _, other, _ = _recorded_episodes(monkeypatch, support, query, way=3, shot=4, queries=6, folds=5, seed=2)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(fits, other, strict=True))


def test_few_shot_eligibility_counts_support_and_queries_in_their_own_sets(monkeypatch):
    support = _coded({0: 10, 1: 10, 2: 3, 3: 10, 4: 10}, sign=1)
    query = _coded({0: 6, 1: 6, 2: 6, 3: 2, 5: 9}, sign=-1)  # 4 only in support, 5 only in queries
    res, fits, _ = _recorded_episodes(monkeypatch, support, query, way=2, shot=5, queries=4, folds=4)
    assert res["eligible"] == [0, 1]
    assert res["excluded"] == [
        {"label": 2, "support_shapes": 3, "query_shapes": 6},
        {"label": 3, "support_shapes": 10, "query_shapes": 2},
        {"label": 4, "support_shapes": 10, "query_shapes": 0},
        {"label": 5, "support_shapes": 0, "query_shapes": 9},
    ]
    assert all(set(ys) == {0, 1} for _, ys in fits)
    with pytest.raises(ValueError, match="needs 3 classes with >= 5 support and >= 4 query shapes"):
        ev.few_shot_eval(*query, support_features=support[0], support_labels=support[1], way=3, shot=5,
                         queries=4)
    # a class with 15 query shapes takes part once 15 queries per class are asked for
    eligible, excluded = ev.few_shot_classes(support[1], query[1], shot=3, queries=6)
    assert eligible.tolist() == [0, 1, 2] and [e["label"] for e in excluded] == [3, 4, 5]
    eligible, excluded = ev.few_shot_classes(query[1], query[1], shot=3, queries=4, pooled=True)
    assert eligible.tolist() == [5] and excluded[0] == {"label": 0, "support_shapes": 6, "query_shapes": 6}


def test_few_shot_separate_support_set_with_a_real_svm_and_its_errors():
    x, y = _blobs(num_classes=5, per_class=40, spread=0.05)
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    res = ev.few_shot_eval(x[test], y[test], support_features=x[train], support_labels=y[train], way=5,
                           shot=10)
    assert res["mean"] == 1.0 and res["queries"] == ev.FEW_SHOT_QUERIES and len(res["accs"]) == 10
    with pytest.raises(ValueError, match="both support_features and support_labels"):
        ev.few_shot_eval(x, y, support_features=x, way=2, shot=1)
    with pytest.raises(ValueError, match="differ in width"):
        ev.few_shot_eval(x, y, support_features=x[:, :3], support_labels=y, way=2, shot=1)


def test_linear_probe_folds_standardisation_into_one_layer():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(spread=2.0)
    probe = ev.fit_linear_probe(x, y, ["a", "b", "c", "d"], c_grid=(0.1, 1.0), cv_folds=3)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=probe.info["C"], max_iter=ev.PROBE_MAX_ITER))
    expected = ref.fit(x, y).predict_proba(x)
    got = probe.predict_proba(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert probe.info["cv_accuracy"] == max(probe.info["scores"].values())


def test_linear_probe_round_trip_and_errors(tmp_path):
    x, y = _blobs()
    probe = ev.fit_linear_probe(x, y, ["a", "b", "c", "d"], c_grid=(1.0,), cv_folds=2)
    path = tmp_path / "probe.safetensors"
    ev.save_probe(probe, path)
    back = ev.load_probe(path)
    assert back.classes == probe.classes and back.info == probe.info
    assert torch.equal(back.weight, probe.weight) and torch.equal(back.bias, probe.bias)
    assert ev.top_k(back.predict_proba(torch.from_numpy(x[:1]))[0], back.classes, k=2)[0][0] == "a"
    with pytest.raises(FileNotFoundError):
        ev.load_probe(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not an i2pmae linear probe"):
        ev.load_probe(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="class names"):
        ev.fit_linear_probe(x, y, ["a", "b"])


def test_voting_is_the_mean_of_the_passes():
    lin = torch.nn.Linear(3, 4)

    def classifier(p):
        return lin(p.mean(1))

    def augment(p, g):
        return p * (1 + torch.rand(p.shape[0], 1, 3, generator=g))

    pts = torch.randn(5, 16, 3)
    single = ev.predict_with_voting(classifier, pts)
    torch.testing.assert_close(single, torch.softmax(classifier(pts), -1))
    got = ev.predict_with_voting(classifier, pts, votes=3, augment=augment,
                                 generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    passes = [pts, augment(pts, g), augment(pts, g)]
    ref = torch.stack([torch.softmax(classifier(p), -1) for p in passes]).mean(0)
    torch.testing.assert_close(got, ref)
    with pytest.raises(ValueError, match="augmentation"):
        ev.predict_with_voting(classifier, pts, votes=2)


class _MeanModel(torch.nn.Module):
    def extract_features(self, points, pool="max"):
        return points.amax(1) if pool == "max" else torch.cat([points.mean(1), points.amax(1)], -1)


def test_extract_features_keeps_order_and_restores_mode():
    data = [{"points": torch.randn(8, 3), "label": i % 3, "index": i} for i in range(7)]
    model = _MeanModel().train()
    feats, labels = ev.extract_features(model, data, batch_size=3, progress=False)
    assert model.training
    np.testing.assert_allclose(feats, torch.stack([d["points"].amax(0) for d in data]).numpy())
    np.testing.assert_array_equal(labels, [i % 3 for i in range(7)])
    feats2, _ = ev.extract_features(model, data, pool="meanmax", progress=False)
    assert feats2.shape == (7, 6)
    with pytest.raises(ValueError, match="empty"):
        ev.extract_features(model, [], progress=False)


class _FirstPointModel(torch.nn.Module):
    """Order-dependent, like FPS starting at the first point: the feature is the first point."""

    def extract_features(self, points, pool="max"):
        return points[:, 0]


def test_point_orders_start_with_the_identity_and_are_seeded_permutations():
    orders = ev.point_orders(50, 4, seed=3)
    assert len(orders) == 4 and torch.equal(orders[0], torch.arange(50))
    for order in orders[1:]:
        assert torch.equal(order.sort().values, torch.arange(50)) and not torch.equal(order, orders[0])
    assert all(torch.equal(a, b) for a, b in zip(orders, ev.point_orders(50, 4, seed=3), strict=True))
    assert not torch.equal(orders[1], ev.point_orders(50, 2, seed=4)[1])
    with pytest.raises(ValueError, match="votes"):
        ev.point_orders(50, 0)


def test_votes_past_the_maximum_are_refused_before_any_order_is_built(monkeypatch):
    top = ev.MAX_VOTES
    assert top * 10_000 * 8 <= 8 * 2**20  # the int64 orders of 10,000 points at the maximum: at most 8 MiB
    assert len(ev.point_orders(10, top)) == top
    with pytest.raises(ValueError, match=rf"votes must be from 1 to {top} \(point orders per shape\), got"):
        ev.point_orders(10, top + 1)
    monkeypatch.setattr(ev, "point_orders", lambda *a, **k: pytest.fail("orders built before the check"))
    data = [{"points": torch.randn(8, 3), "label": 0}]
    with pytest.raises(ValueError, match=rf"votes must be from 1 to {top} .*got 1000000000"):
        ev.extract_features(_FirstPointModel(), data, progress=False, votes=10**9)


def test_cv_folds_count_classes_without_an_array_sized_by_the_largest_label():
    x, y = _blobs(num_classes=3, per_class=4)
    for far in (10**15, -(10**15)):  # bincount: "Unable to allocate 7.1 PiB" / "no negative elements"
        labels = np.where(y == 2, far, y)
        assert ev.select_svm(x, labels, cv_folds=3)["cv_folds"] == 3


def test_feature_votes_average_the_passes_over_point_orders():
    data = [{"points": torch.randn(8, 3), "label": 0} for _ in range(5)]
    model = _FirstPointModel()
    got, _ = ev.extract_features(model, data, batch_size=2, progress=False, votes=3, seed=1)
    orders = ev.point_orders(8, 3, seed=1)
    ref = torch.stack([torch.stack([d["points"][o[0]] for o in orders]).mean(0) for d in data]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    same_in_one_batch, _ = ev.extract_features(model, data, batch_size=5, progress=False, votes=3, seed=1)
    np.testing.assert_array_equal(got, same_in_one_batch)  # the orders do not depend on batching
    one_pass, _ = ev.extract_features(model, data, progress=False)
    np.testing.assert_array_equal(one_pass, torch.stack([d["points"][0] for d in data]).numpy())
    invariant, _ = ev.extract_features(_MeanModel(), data, progress=False, votes=4)
    np.testing.assert_allclose(invariant, torch.stack([d["points"].amax(0) for d in data]).numpy())


def test_feature_votes_change_the_real_encoder_feature():
    from helpers import SMALL_MODEL, make_clouds

    from i2pmae.model import I2PMAE, I2PMAEConfig

    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(**SMALL_MODEL)).eval()
    clouds = make_clouds(2, SMALL_MODEL["num_points"])
    data = [{"points": c, "label": 0} for c in clouds]
    one, _ = ev.extract_features(model, data, progress=False)
    two, _ = ev.extract_features(model, data, progress=False, votes=2)
    order = ev.point_orders(clouds.shape[1], 2)[1]
    with torch.no_grad():
        permuted = model.extract_features(clouds[:, order]).numpy()
    np.testing.assert_allclose(two, (one + permuted) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one, permuted)  # other FPS centres: a different feature of the same points


def test_mean_interval_and_paired_difference_against_closed_form():
    from scipy import stats

    values = [0.93, 0.95, 0.94, 0.96]
    out = ev.mean_interval(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert out["mean"] == pytest.approx(0.945) and out["high"] - out["mean"] == pytest.approx(half)
    assert out["low"] == pytest.approx(0.945 - half) and out["n"] == 4
    diff = ev.paired_difference([0.95, 0.96, 0.97], [0.94, 0.94, 0.94])
    assert diff["values"] == pytest.approx([0.01, 0.02, 0.03]) and diff["mean"] == pytest.approx(0.02)
    assert diff["low"] == pytest.approx(0.02 - stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3))
    with pytest.raises(ValueError, match="at least 2"):
        ev.mean_interval([0.9])
    with pytest.raises(ValueError, match="same seeds"):
        ev.paired_difference([0.9, 0.8], [0.9])


def _saved_probe(tmp_path, weight: torch.Tensor, bias: torch.Tensor):
    path = tmp_path / "probe.safetensors"
    ev.save_probe(ev.LinearProbe(weight, bias, [f"c{i}" for i in range(len(bias))]), path)
    return path


def test_a_probe_with_non_finite_weights_is_refused_at_load(tmp_path):
    from i2pmae.checkpoints import CheckpointError

    weight, bias = torch.ones(3, 4), torch.zeros(3)
    minus_inf_row = weight.clone().index_fill_(0, torch.tensor([1]), -torch.inf)  # -inf: only in a bias
    for name, bad_weight, bad_bias in (("weight", weight.clone().fill_(torch.nan), bias),
                                       ("weight", minus_inf_row, bias),
                                       ("bias", weight, torch.tensor([0.0, torch.nan, 0.0])),
                                       ("bias", weight, torch.tensor([0.0, torch.inf, 0.0]))):
        with pytest.raises(CheckpointError, match=rf"tensor '{name}' holds \d+ NaN or infinite value"):
            ev.load_probe(_saved_probe(tmp_path, bad_weight, bad_bias))
    with pytest.raises(CheckpointError, match="every class has bias -inf"):
        ev.load_probe(_saved_probe(tmp_path, weight, torch.full((3,), -torch.inf)))


def test_a_probe_fitted_without_some_classes_still_loads(tmp_path):
    x, y = _blobs(num_classes=3)
    probe = ev.fit_linear_probe(x, y, ["a", "b", "c", "never seen"], c_grid=(1.0,), cv_folds=2)
    assert probe.bias[3] == -torch.inf  # a class absent from train is never predicted
    ev.save_probe(probe, tmp_path / "probe.safetensors")
    back = ev.load_probe(tmp_path / "probe.safetensors")
    probabilities = back.predict_proba(torch.from_numpy(x[:5]))
    assert torch.isfinite(probabilities).all() and (probabilities[:, 3] == 0).all()
