"""The Evidence panel (app/evidence.py) on ablation records written here by ``scripts/ablation.py``'s own
``build_record``, so that the app reads exactly what the script writes; never on the repository's record."""

import copy
import json
import math
from pathlib import Path

import pytest
from helpers import ablation_script

from app import evidence, figures

BASE_SVM = [0.915, 0.921, 0.909, 0.918, 0.912]  # i2p-random, seeds 0..4
BASE_SHOT = [0.893, 0.901, 0.887, 0.896, 0.890]
CLEAR = [0.010, 0.012, 0.009, 0.011, 0.013]  # guided - random per seed: every seed ahead, interval > 0
MIXED = [0.004, -0.003, 0.006, 0.001, -0.002]  # ahead on 3 of 5, interval spans 0


@pytest.fixture(scope="module")
def ablation():
    return ablation_script()


def results(guided: dict[str, list[float]], seeds: int = 5) -> dict:
    """Per-seed scores of random init, the random mask and each guided row (row -> its gain per seed,
    the same on both metrics): the ``results`` that ``build_record`` takes."""
    def score(svm: float, shot: float) -> dict:
        return {"svm_accuracy": svm, "fewshot_5way_10shot": shot, "commit": "abc1234", "command": "x",
                "seconds": 700}

    out = {"random-init": {s: score(BASE_SVM[s] - 0.08, BASE_SHOT[s] - 0.3) for s in range(seeds)},
           "i2p-random": {s: score(BASE_SVM[s], BASE_SHOT[s]) for s in range(seeds)}}
    for row, gain in guided.items():
        out[row] = {s: score(BASE_SVM[s] + gain[s], BASE_SHOT[s] + gain[s]) for s in range(seeds)}
    return out


def write(path: Path, record) -> Path:
    path.write_text(json.dumps(record, ensure_ascii=False))
    return path


@pytest.fixture
def record(ablation):
    """τ = 0.01 clearly ahead, τ = 1 mixed: one shown and one only suggested difference per metric."""
    return ablation.build_record(results({"i2p-guided-tau1": MIXED, "i2p-guided-tau0.01": CLEAR}), 10, 2)


def points(stat: dict, key: str) -> str:
    return f"{100 * stat[key]:+.2f}".replace("-", "−")


# ------------------------------------------------------------------------------------------- good records
def test_a_good_record_loads_without_a_note(tmp_path, record):
    loaded = evidence.load(write(tmp_path / "ablation.json", record))
    assert loaded == evidence.Evidence(record, "")


def test_the_sentences_follow_the_numbers(record):
    said = evidence.sentences(record)
    clear, mixed = ({d["row"]: d for d in record["differences"]}[r] for r in ("i2p-guided-tau0.01",
                                                                               "i2p-guided-tau1"))
    svm = clear["svm_accuracy"]
    assert svm["low"] > 0 and svm["positive"] == 5  # what the data says, then what the sentence says
    assert said["shown"].startswith("Over n = 5 seeds of 10-epoch pre-training, guided τ = 0.01 − random")
    assert (f"guided τ = 0.01 − random, linear SVM: {points(svm, 'mean')} points [{points(svm, 'low')}, "
            f"{points(svm, 'high')}], ahead on 5 of 5 seeds") in said["shown"]
    assert said["shown"].endswith("these 95 % intervals exclude 0.")
    stat = mixed["svm_accuracy"]
    assert stat["low"] < 0 < stat["high"] and stat["positive"] == 3
    assert (f"Guided τ = 1 − random, linear SVM: {points(stat, 'mean')} points [{points(stat, 'low')}, "
            f"{points(stat, 'high')}], ahead on 3 of 5 seeds (the observed effect would need about "
            f"{stat['seeds_for_95']} seeds)") in said["suggested"]
    assert "τ = 1" not in said["shown"] and "τ = 0.01" not in said["suggested"]
    assert said["suggested"].endswith("their intervals span 0.")


def test_when_every_interval_excludes_zero_nothing_is_only_suggested(ablation):
    record = ablation.build_record(results({"i2p-guided-tau0.01": CLEAR}), 10, 2)
    said = evidence.sentences(record)
    assert said["suggested"] == "Nothing: every guided − random interval excludes 0."
    assert said["shown"].count("ahead on 5 of 5 seeds") == 2  # both metrics


def test_when_every_interval_spans_zero_nothing_is_shown(ablation):
    record = ablation.build_record(results({"i2p-guided-tau1": MIXED}), 10, 2)
    said = evidence.sentences(record)
    assert "no guided − random interval excludes 0" in said["shown"]
    svm, fewshot = (record["differences"][0][metric] for metric in evidence.METRICS)
    assert svm["low"] < 0 < svm["high"] and fewshot["low"] < 0 < fewshot["high"]
    bound = (f"; at 95 %, no interval allows a gain above {points(svm, 'high')} points on the linear SVM or "
             f"{points(fewshot, 'high')} points on the 5-way 10-shot.")
    assert said["shown"].endswith(bound)
    needed = record["differences"][0]["svm_accuracy"]["seeds_for_95"]
    assert said["suggested"].count("ahead on 3 of 5 seeds") == 2
    assert f"would need about {needed} seeds" in said["suggested"]


def test_an_effect_of_exactly_zero_needs_no_seed_count(ablation):
    record = ablation.build_record(results({"i2p-guided-tau1": [0.01, -0.01, 0.0, 0.02, -0.02]}), 10, 2)
    assert record["differences"][0]["svm_accuracy"]["seeds_for_95"] is None
    assert "no effect was observed to extrapolate" in evidence.sentences(record)["suggested"]


def test_the_table_has_every_row_and_difference(record):
    table = evidence.table_markdown(record)
    assert "over n = 5 seeds (0, 1, 2, 3, 4)" in table
    for row in record["rows"]:
        svm = row["summary"]["svm_accuracy"]
        assert f"| {row['label']} | {100 * svm['mean']:.2f} ± {100 * svm['std']:.2f} [" in table
    mixed = record["differences"][0]["svm_accuracy"]
    assert (f"| guided τ = 1 − random | linear SVM | {points(mixed, 'mean')} [{points(mixed, 'low')}, "
            f"{points(mixed, 'high')}] | 3 of 5 | ~{mixed['seeds_for_95']} |") in table
    assert "| guided τ = 0.01 − random | 5-way 10-shot | " in table and "| 5 of 5 | shown |" in table


def test_the_figure_shows_every_seed_and_every_interval(record):
    fig = evidence.evidence_figure(record)
    dots = [t for t in fig.data if t.name == "one pre-training seed"]
    per_row = sum(len(row["per_seed"]) for row in record["rows"])
    per_difference = sum(len(d["svm_accuracy"]["values"]) for d in record["differences"])
    assert [len(t.x) for t in dots] == [per_row, per_difference] * 2  # (a) and (b), per metric
    random = next(row for row in record["rows"] if row["name"] == "i2p-random")
    seeds = sorted(100 * r["svm_accuracy"] for r in random["per_seed"].values())
    assert all(any(math.isclose(x, s) for x in dots[0].x) for s in seeds)
    assert len({round(y, 6) for y in dots[0].y}) == per_row  # jittered: no two dots on one line
    means = [t for t in fig.data if t.name == "mean and 95 % interval"]
    assert len(means) == 2 and len(means[0].x) == len(record["rows"])
    shown = [t for t in fig.data if t.name == "95 % interval excludes 0: shown"]
    suggested = [t for t in fig.data if t.name == "95 % interval spans 0: only suggested"]
    assert len(shown) == 2 and len(suggested) == 2  # τ = 0.01 and τ = 1, on each metric
    mixed = record["differences"][0]["svm_accuracy"]
    assert suggested[0].error_x.arrayminus[0] == pytest.approx(100 * (mixed["mean"] - mixed["low"]))
    zeros = [s for s in fig.layout.shapes if s.x0 == 0 == s.x1]
    assert len(zeros) == 2 and all(s.line.dash == "dash" for s in zeros)


def test_the_panel_and_the_answer_of_a_good_record(record):
    loaded = evidence.Evidence(record)
    panel = evidence.panel(loaded)
    said = evidence.sentences(record)
    assert panel.text == (f"**What is shown.** {said['shown']}\n\n"
                          f"**What is only suggested.** {said['suggested']}")
    assert panel.table == evidence.table_markdown(record)
    answer = evidence.answer(loaded)
    assert answer == {**record, "sentences": said} and "note" not in answer
    json.dumps(answer, allow_nan=False)  # what the endpoint sends


# ------------------------------------------------------------------------------------------- too few seeds
def test_one_seed_shows_single_runs_with_a_note(tmp_path, ablation):
    record = ablation.build_record(results({"i2p-guided-tau1": MIXED}, seeds=1), 10, 2)
    assert "summary" not in record["rows"][0] and record["differences"] == []
    loaded = evidence.load(write(tmp_path / "ablation.json", record))
    assert loaded.record == record and "only seed 0 is shared by every row" in loaded.note
    panel = evidence.panel(loaded)
    assert panel.text == f"**{loaded.note}**"
    assert "Single runs (seed 0)" in panel.table and f"{100 * BASE_SVM[0]:.2f} |" in panel.table
    dots = [t for t in panel.figure.data if t.name == "one pre-training seed"]
    assert [len(t.x) for t in dots] == [3, 3]  # one per row, no difference panel
    answer = evidence.answer(loaded)
    assert answer["note"] == loaded.note and "sentences" not in answer and answer["rows"] == record["rows"]


def test_a_seed_not_in_every_row_is_an_open_dot(ablation):
    scores = results({"i2p-guided-tau1": MIXED})
    scores["i2p-guided-tau1"][7] = scores["i2p-guided-tau1"][0]  # ahead of the other rows
    record = ablation.build_record(scores, 10, 2)
    dots = next(t for t in evidence.evidence_figure(record).data if t.name == "one pre-training seed")
    assert list(dots.marker.symbol).count("circle-open") == 1 and len(dots.x) == 16


def test_no_shared_seed_and_no_rows(tmp_path, ablation):
    apart = ablation.build_record({"i2p-random": results({})["i2p-random"],
                                   "i2p-guided-tau1": {9: results({"i2p-guided-tau1": MIXED})
                                                       ["i2p-guided-tau1"][0]}}, 10, 2)
    loaded = evidence.load(write(tmp_path / "apart.json", apart))
    assert "no seed is shared by every row" in loaded.note
    assert "none shared yet" in evidence.panel(loaded).table
    empty = evidence.load(write(tmp_path / "empty.json", ablation.build_record({}, 10, 2)))
    assert empty.record is None and "no scored runs yet" in empty.note


def test_a_record_without_the_random_mask_row_has_no_differences(tmp_path, ablation):
    scores = results({"i2p-guided-tau1": MIXED})
    del scores["i2p-random"]
    loaded = evidence.load(write(tmp_path / "ablation.json", ablation.build_record(scores, 10, 2)))
    assert "no paired guided − random differences" in loaded.note
    assert "What is shown" not in evidence.panel(loaded).text


# ------------------------------------------------------------------------------------------- no record
def test_a_missing_file_is_a_note(tmp_path):
    loaded = evidence.load(tmp_path / "ablation.json")
    assert loaded.record is None and "does not exist" in loaded.note and "scripts/ablation.py" in loaded.note
    panel = evidence.panel(loaded)
    assert panel.text == f"**{loaded.note}**" and panel.table == ""
    assert panel.figure.layout.annotations[0].text == "no ablation record to show"
    assert evidence.answer(loaded) == {"note": loaded.note}


def test_the_default_path_and_its_override(tmp_path, monkeypatch):
    monkeypatch.delenv(evidence.EVIDENCE_ENV, raising=False)
    assert evidence.evidence_path() == Path(__file__).resolve().parent.parent / "docs" / "ablation.json"
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(tmp_path / "other.json"))
    assert evidence.evidence_path() == tmp_path / "other.json"
    assert "other.json` does not exist" in evidence.load().note


@pytest.mark.parametrize(("content", "message"), [
    (b'{"rows": [', "is not valid JSON (Expecting value, line 1 column 11)"),
    (b"", "is not valid JSON"),
    (b"\xff\xfe\x00junk", "could not be read (UnicodeDecodeError"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_a_malformed_file_is_a_note(tmp_path, content, message):
    path = tmp_path / "ablation.json"
    path.write_bytes(content)
    loaded = evidence.load(path)
    assert loaded.record is None and message in loaded.note


def test_a_folder_and_a_huge_file_are_notes(tmp_path, monkeypatch):
    assert "could not be read (IsADirectoryError" in evidence.load(tmp_path).note
    monkeypatch.setattr(evidence, "MAX_RECORD_BYTES", 10)
    assert "is over 0 MB" in evidence.load(write(tmp_path / "big.json", {"rows": []})).note


def _set(record: dict, where: tuple, value) -> dict:
    """A copy of ``record`` with the value at the key path ``where`` replaced (or deleted for ...)."""
    out = copy.deepcopy(record)
    *parents, last = where
    target = out
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return out


@pytest.mark.parametrize(("where", "value", "message"), [
    ((), None, "the file should be a JSON object"),
    (("seeds",), "0, 1", "seeds should be a list of distinct integers"),
    (("seeds",), [0, 0, 1], "seeds should be a list of distinct integers"),
    (("rows",), {}, "rows should be a list"),
    (("differences",), ..., "differences should be a list"),
    (("rows", 1, "per_seed", "2", "svm_accuracy"), "0.9", "rows[1].per_seed[2].svm_accuracy should be an "
                                                           "accuracy in [0, 1]"),
    (("rows", 1, "per_seed", "2", "svm_accuracy"), 91.5, "accuracy in [0, 1]"),
    (("rows", 1, "per_seed", "2", "fewshot_5way_10shot"), True, "accuracy in [0, 1]"),
    (("rows", 1, "per_seed", "3"), ..., "rows[1].per_seed should be scored at every shared seed (missing [3"),
    (("rows", 0, "name"), ["x"], "rows[0].name should be a text"),
    (("rows", 0, "summary"), ..., "rows[0].summary should be an object"),
    (("rows", 0, "summary", "svm_accuracy", "high"), 10**400, "rows[0].summary.svm_accuracy.high should be a "
                                                              "finite number"),
    (("rows", 0, "summary", "svm_accuracy", "low"), 0.99, "low ≤ mean ≤ high"),
    (("rows", 0, "summary", "svm_accuracy", "values"), [0.9], "values should be n numbers"),
    (("differences", 0, "row"), "i2p-guided-tau5", "differences[0].row should be the name of a row"),
    (("differences", 0, "minus"), {"a": 1}, "differences[0].minus should be the name of a row"),
    (("differences", 0, "svm_accuracy", "positive"), 9, "a count of seeds between 0 and n"),
    (("differences", 0, "fewshot_5way_10shot", "seeds_for_95"), 2.5, "seeds_for_95 should be a number"),
    (("differences", 0, "svm_accuracy"), ..., "differences[0].svm_accuracy should be an object"),
])
def test_a_wrong_structure_is_a_note_that_says_where(tmp_path, record, where, value, message):
    bad = value if where == () else _set(record, where, value)
    loaded = evidence.load(write(tmp_path / "ablation.json", bad))
    assert loaded.record is None and message in loaded.note
    assert "is not an ablation record as `scripts/ablation.py` writes it" in loaded.note
    assert evidence.answer(loaded) == {"note": loaded.note}


def test_nan_in_the_file_is_refused(tmp_path, record):
    path = tmp_path / "ablation.json"
    path.write_text(json.dumps(_set(record, ("differences", 0, "svm_accuracy", "mean"), math.nan)))
    assert "differences[0].svm_accuracy.mean should be a finite number" in evidence.load(path).note


def _leaves(value, where=()):
    """Every key path of a JSON value that leads to a number, text, boolean or null."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*where, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*where, i))
    else:
        yield where


@pytest.mark.slow
def test_no_replaced_value_breaks_the_panel(tmp_path, ablation):
    """Whatever one value of the file becomes, the page gets a note or a drawable record, never an error."""
    record = ablation.build_record(results({"i2p-guided-tau1": MIXED}, seeds=2), 10, 2)
    path = tmp_path / "ablation.json"
    not_a_number, drawn = set(), set()
    for where in _leaves(record):
        for value in (None, "x", -1, 2.5, [], {}):
            loaded = evidence.load(write(path, _set(record, where, value)))
            assert loaded.record is not None or loaded.note
            if loaded.record is None:
                continue
            json.dumps(evidence.answer(loaded), allow_nan=False)  # the sentences and the endpoint's JSON
            evidence.table_markdown(loaded.record)
            number = isinstance(value, int | float)
            if (where[-1], number) not in drawn:  # one figure per kind of change: each takes ~0.1 s
                drawn.add((where[-1], number))
                assert evidence.panel(loaded).figure.data
            if not number:
                not_a_number.add(where[-1])
    # a value of the wrong type only passes where the panel does not read it, or reads it as text
    assert not_a_number <= {"what", "config", "epochs", "processes", "data", "svm_accuracy",
                            "fewshot_5way_10shot", "interval", "baseline", "commit", "command", "seconds",
                            "level", "name", "label", "seeds_for_95", 0, 1, 2}


def test_the_message_figure_is_the_apps(tmp_path):
    panel = evidence.panel(evidence.load(tmp_path / "none.json"))
    assert panel.figure.layout.template == figures.message_figure("x").layout.template
