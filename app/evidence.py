"""The Evidence panel: the seeded ablation record ``docs/ablation.json`` as a figure, two sentences and a
table, every word and number derived from the record.

``scripts/ablation.py`` rewrites the record after each scored run, so it may be missing, hold a single
seed, or (edited by hand, written by another version) not be a record at all: :func:`load` says what can
be shown and what cannot, and never raises; whatever it accepts, the rest of this module can draw.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import figures
from .paths import EVIDENCE_PATH, REPO_ROOT

EVIDENCE_ENV = "I2PMAE_EVIDENCE"  # a record to show instead of docs/ablation.json
MAX_RECORD_BYTES = 4 * 2**20  # 6 rows x 100 seeds take ~0.2 MB; the page reads the file on every load
METRICS = {"svm_accuracy": "linear SVM", "fewshot_5way_10shot": "5-way 10-shot"}  # what the script scores
STAT_KEYS = ("mean", "std", "low", "high")
GUIDED_ROW = re.compile(r"i2p-guided-tau(.+)")
SEED_KEY = re.compile(r"-?[0-9]{1,18}")
SHORT_NAMES = {"i2p-random": "random"}
JITTER = 0.18  # half the spread of the per-seed dots around their row, in rows
ROW_PX, BASE_PX, PANEL_GAP_PX = 44, 200, 90  # a row of dots, titles and legend, between (a) and (b)
LABEL_WRAP = 26  # characters: longer row labels break after their first comma
POINTS_RGB, MEAN_RGB, ZERO_RGB = figures.GUIDED_RGB, "rgb(40,40,40)", "rgb(90,90,90)"
SHOWN_RGB, SUGGESTED_RGB = figures.CURRENT_TAU_RGB, figures.RANDOM_RGB
EVIDENCE_MARGIN = {"l": 10, "r": 10, "t": 50, "b": 40}
LEGEND = {"orientation": "h", "y": -0.08, "x": 0.5, "xanchor": "center", "yanchor": "top"}


class BadRecord(ValueError):
    """The file is not a record as ``scripts/ablation.py`` writes it; the message says where."""


@dataclass(frozen=True)
class Evidence:
    """What :func:`load` found: the record (None when there is nothing to show) and what is missing."""

    record: dict | None
    note: str = ""  # "" for a record with intervals and paired differences


class EvidencePanel(NamedTuple):
    """The panel's outputs, in the page's order."""

    figure: go.Figure
    text: str  # Markdown: the two sentences, after the note if there is one
    table: str  # Markdown: the README-style numbers


# ------------------------------------------------------------------------------------------- loading
def evidence_path() -> Path:
    """``I2PMAE_EVIDENCE`` when set (read per request, so a test or a deployment can point elsewhere)."""
    return Path(os.environ.get(EVIDENCE_ENV) or EVIDENCE_PATH)


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load(path: Path | str | None = None) -> Evidence:
    """The record at ``path`` (default :func:`evidence_path`), or a note saying why there is none."""
    path = Path(path) if path is not None else evidence_path()
    name = f"`{_shown(path)}`"
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return Evidence(None, f"{name} is over {MAX_RECORD_BYTES >> 20} MB: not an ablation record.")
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Evidence(None, f"No ablation record yet: {name} does not exist. `scripts/ablation.py` "
                              "writes it as its runs finish.")
    except json.JSONDecodeError as err:
        return Evidence(None, f"{name} is not valid JSON ({err.msg}, line {err.lineno} column {err.colno}).")
    except RecursionError:
        return Evidence(None, f"{name} is not an ablation record: its JSON is nested too deeply.")
    except (OSError, UnicodeDecodeError) as err:
        return Evidence(None, f"{name} could not be read ({type(err).__name__}: {err}).")
    try:
        check_record(record)
    except BadRecord as err:
        return Evidence(None, f"{name} is not an ablation record as `scripts/ablation.py` writes it: {err}.")
    if not record["rows"]:
        return Evidence(None, f"{name} holds no scored runs yet.")
    return Evidence(record, _gaps(record))


def _gaps(record: dict) -> str:
    """What a valid record with rows cannot show yet: "" when it has intervals and paired differences."""
    seeds = record["seeds"]
    if len(seeds) < 2:
        which = f"only seed {seeds[0]} is" if seeds else "no seed is"
        return (f"So far {which} shared by every row: intervals and paired differences need at least 2 "
                "seeds, so the dots in the figure are single runs, not evidence either way.")
    if not record["differences"]:
        return ("The record has no paired guided − random differences: it needs the random-mask row and "
                "a guided row with the same seeds.")
    return ""


# ------------------------------------------------------------------------------------------- checking
def _expect(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise BadRecord(f"{where} should be {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


def _check_stat(stat: Any, where: str, low: float = -math.inf, high: float = math.inf) -> None:
    """A ``mean_interval`` of n >= 2 values within [low, high]."""
    _expect(isinstance(stat, dict), where, "an object")
    for key in STAT_KEYS:
        _expect(_is_number(stat.get(key)), f"{where}.{key}", "a finite number")
    _expect(stat["low"] <= stat["mean"] <= stat["high"] and stat["std"] >= 0, where,
            "an interval: low ≤ mean ≤ high, std ≥ 0")
    _expect(_is_int(stat.get("n")) and stat["n"] >= 2, f"{where}.n", "an integer ≥ 2")
    values = stat.get("values")
    _expect(isinstance(values, list) and len(values) == stat["n"]
            and all(_is_number(v) and low <= v <= high for v in values), f"{where}.values",
            f"n numbers in [{low}, {high}]")


def _check_row(row: Any, where: str, seeds: list[int]) -> None:
    _expect(isinstance(row, dict), where, "an object")
    for key in ("name", "label"):
        _expect(isinstance(row.get(key), str) and row[key] != "", f"{where}.{key}", "a text")
    per_seed = row.get("per_seed")
    _expect(isinstance(per_seed, dict) and per_seed, f"{where}.per_seed", "an object with one entry per seed")
    for seed, result in per_seed.items():
        _expect(SEED_KEY.fullmatch(seed) is not None, f"{where}.per_seed key {seed!r}", "a seed (an integer)")
        _expect(isinstance(result, dict), f"{where}.per_seed[{seed}]", "an object")
        for metric in METRICS:
            value = result.get(metric)
            _expect(_is_number(value) and 0 <= value <= 1, f"{where}.per_seed[{seed}].{metric}",
                    "an accuracy in [0, 1]")
    missing = [s for s in seeds if str(s) not in per_seed]
    _expect(not missing, f"{where}.per_seed", f"scored at every shared seed (missing {missing})")
    summary = row.get("summary")
    if len(seeds) >= 2 or summary is not None:
        _expect(isinstance(summary, dict), f"{where}.summary", "an object (intervals over the shared seeds)")
        for metric in METRICS:
            _check_stat(summary.get(metric), f"{where}.summary.{metric}", 0.0, 1.0)


def _check_difference(diff: Any, where: str, names: set[str]) -> None:
    _expect(isinstance(diff, dict), where, "an object")
    for key in ("row", "minus"):
        _expect(isinstance(diff.get(key), str) and diff[key] in names, f"{where}.{key}", "the name of a row")
    for metric in METRICS:
        stat = diff.get(metric)
        _check_stat(stat, f"{where}.{metric}", -1.0, 1.0)
        _expect(_is_int(stat.get("positive")) and 0 <= stat["positive"] <= stat["n"],
                f"{where}.{metric}.positive", "a count of seeds between 0 and n")
        needed = stat.get("seeds_for_95")
        _expect(needed is None or (_is_int(needed) and needed >= 2), f"{where}.{metric}.seeds_for_95",
                "a number of seeds ≥ 2, or null")


def check_record(record: Any) -> None:
    """Raise :class:`BadRecord` unless ``record`` has the structure ``scripts/ablation.py`` writes."""
    _expect(isinstance(record, dict), "the file", "a JSON object")
    seeds = record.get("seeds")
    _expect(isinstance(seeds, list) and all(map(_is_int, seeds)) and len(set(seeds)) == len(seeds), "seeds",
            "a list of distinct integers")
    _expect(isinstance(record.get("protocol", {}), dict), "protocol", "an object")
    rows, differences = record.get("rows"), record.get("differences")
    _expect(isinstance(rows, list), "rows", "a list")
    _expect(isinstance(differences, list), "differences", "a list")
    for i, row in enumerate(rows):
        _check_row(row, f"rows[{i}]", seeds)
    names = {row["name"] for row in rows}
    _expect(len(names) == len(rows), "rows", "rows with distinct names")
    for i, diff in enumerate(differences):
        _check_difference(diff, f"differences[{i}]", names)
        _expect(diff["svm_accuracy"]["n"] == len(seeds), f"differences[{i}]", "paired over the shared seeds")


# ------------------------------------------------------------------------------------------- words
def short_name(row: str, label: str = "") -> str:
    """How the sentences name a row: "guided τ = 0.01" for i2p-guided-tau0.01, "random" for i2p-random."""
    if match := GUIDED_ROW.fullmatch(row):
        return f"guided τ = {match[1]}"
    return SHORT_NAMES.get(row, label or row)


def _difference_name(record: dict, diff: dict) -> str:
    labels = {row["name"]: row["label"] for row in record["rows"]}
    guided, minus = diff["row"], diff["minus"]
    return f"{short_name(guided, labels[guided])} − {short_name(minus, labels[minus])}"


def _points(value: float) -> str:
    """A difference of accuracies in signed points, with a true minus sign."""
    return f"{round(100 * value, 2) + 0.0:+.2f}".replace("-", "−")  # + 0.0: no "−0.00" for a tiny negative


def excludes_zero(stat: dict) -> bool:
    return stat["low"] > 0 or stat["high"] < 0


def _seeds_needed(stat: dict) -> str:
    needed = stat["seeds_for_95"]
    if needed is not None:
        return f"the observed effect would need about {needed} seeds"
    if stat["mean"] == 0:
        return "no effect was observed to extrapolate"
    return "at this spread the observed effect would need more than 1000 seeds"


def _finding(name: str, metric: str, stat: dict) -> str:
    return (f"{name}, {METRICS[metric]}: {_points(stat['mean'])} points [{_points(stat['low'])}, "
            f"{_points(stat['high'])}], ahead on {stat['positive']} of {stat['n']} seeds")


def sentences(record: dict) -> dict[str, str]:
    """{"shown": ..., "suggested": ...}: which paired differences have a 95 % interval that excludes 0,
    and which only suggest an effect (interval spans 0), with how many seeds the observed effect needs."""
    shown, suggested = [], []
    for diff in record["differences"]:
        name = _difference_name(record, diff)
        for metric in METRICS:
            stat = diff[metric]
            if excludes_zero(stat):
                shown.append(_finding(name, metric, stat))
            else:
                suggested.append(f"{_finding(name, metric, stat)} ({_seeds_needed(stat)})")
    epochs = record.get("protocol", {}).get("epochs")
    over = f"Over n = {len(record['seeds'])} seeds" + (f" of {epochs}-epoch pre-training" if _is_int(epochs)
                                                       else "")
    if shown:
        these = "this 95 % interval excludes" if len(shown) == 1 else "these 95 % intervals exclude"
        shown_text = f"{over}, {'; '.join(shown)}: {these} 0."
    else:
        shown_text = (f"{over}, no guided − random interval excludes 0: the record shows neither a gain nor "
                      f"a loss from 2D-guided masking{_largest_gain(record['differences'])}.")
    if suggested:
        span = "its interval spans" if len(suggested) == 1 else "their intervals span"
        suggested_text = f"{'; '.join(suggested)}: {span} 0."
        suggested_text = suggested_text[0].upper() + suggested_text[1:]  # "Guided τ = 1 − random, ..."
    else:
        suggested_text = "Nothing: every guided − random interval excludes 0."
    return {"shown": shown_text, "suggested": suggested_text}


def _largest_gain(differences: list[dict]) -> str:
    """What the intervals do show when none excludes 0: how large a gain they still allow."""
    if not differences:
        return ""
    highs = [f"{_points(max(diff[metric]['high'] for diff in differences))} points on the {label}"
             for metric, label in METRICS.items()]
    return f"; at 95 %, no interval allows a gain above {' or '.join(highs)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _spread(stat: dict) -> str:
    """mean ± std [interval] in percent."""
    mean, std, low, high = (100 * stat[key] for key in STAT_KEYS)
    return f"{mean:.2f} ± {std:.2f} [{low:.2f}, {high:.2f}]"


def _needed_cell(stat: dict) -> str:
    if excludes_zero(stat):
        return "shown"
    return "–" if stat["seeds_for_95"] is None else f"~{stat['seeds_for_95']}"


def table_markdown(record: dict) -> str:
    """The README-style tables: each row's scores, then the paired differences."""
    seeds = record["seeds"]
    listed = ", ".join(map(str, seeds))
    if len(seeds) >= 2:
        lines = [f"Mean ± sample std [95 % Student-t interval] over n = {len(seeds)} seeds ({listed}), in %:"]
    else:
        lines = [f"Single runs (seed {listed or 'none shared yet'}), in %:"]
    lines += ["", "| row | linear SVM | 5-way 10-shot |", "|---|---|---|"]
    for row in record["rows"]:
        if "summary" in row:
            cells = [_spread(row["summary"][m]) for m in METRICS]
        else:
            cells = [" / ".join(f"{100 * row['per_seed'][str(s)][m]:.2f}" for s in seeds) or "–"
                     for m in METRICS]
        lines.append(f"| {_cell(row['label'])} | {' | '.join(cells)} |")
    if record["differences"]:
        lines += ["", "Paired by seed, in points; *seeds needed*: where the observed effect would clear 0 "
                  "at 95 %, if its spread held:", "",
                  "| difference | score | mean [95 % interval] | seeds ahead | seeds needed |",
                  "|---|---|---|---|---|"]
        for diff in record["differences"]:
            name = _cell(_difference_name(record, diff))
            for metric, label in METRICS.items():
                s = diff[metric]
                lines.append(f"| {name} | {label} | {_points(s['mean'])} [{_points(s['low'])}, "
                             f"{_points(s['high'])}] | {s['positive']} of {s['n']} | {_needed_cell(s)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- figure
def _wrap(label: str) -> str:
    """A long row label on two lines, broken at the comma that makes them most even, so the figure keeps
    its width for the data."""
    commas = [i for i in range(len(label)) if label.startswith(", ", i)]
    if len(label) <= LABEL_WRAP or not commas:
        return label
    cut = min(commas, key=lambda i: (max(i, len(label) - i), -i))  # on a tie the later comma
    return f"{label[:cut + 1]}<br>{label[cut + 2:]}"


def _jitter(count: int) -> np.ndarray:
    """(count,) fixed vertical offsets that spread a row's dots (the same on every page load)."""
    return np.random.default_rng(0).uniform(-JITTER, JITTER, count)


def _dots(x: list[float], y: list[float], text: list[str], symbols: list[str], *, show: bool) -> go.Scatter:
    """One dot per pre-training seed (x in % or points), jittered around its row y."""
    return go.Scatter(x=x, y=np.asarray(y) + _jitter(len(y)), mode="markers", name="one pre-training seed",
                      legendgroup="seeds", showlegend=show, text=text, hoverinfo="text",
                      marker={"color": POINTS_RGB, "size": 6, "opacity": 0.6, "symbol": symbols})


def _means(stats: list[dict], y: list[int], colour: str, name: str, *, show: bool) -> go.Scatter:
    """Means (x 100) with their 95 % intervals as horizontal error bars."""
    mean, low, high = (np.array([100 * s[key] for s in stats]) for key in ("mean", "low", "high"))
    return go.Scatter(
        x=mean, y=y, mode="markers", name=name, legendgroup=name, showlegend=show,
        marker={"color": colour, "size": 10, "symbol": "diamond"},
        error_x={"type": "data", "symmetric": False, "array": high - mean, "arrayminus": mean - low,
                 "color": colour, "thickness": 2, "width": 6},
        text=[f"mean {100 * s['mean']:.2f} [{100 * s['low']:.2f}, {100 * s['high']:.2f}], n = {s['n']}"
              for s in stats], hoverinfo="text")


def _score_traces(record: dict, metric: str, first: bool) -> list[go.Scatter]:
    """Panel (a) for one metric: every row's per-seed accuracies and, with >= 2 seeds, mean and interval."""
    shared = set(record["seeds"])
    x, y, text, symbols = [], [], [], []
    for i, row in enumerate(record["rows"]):
        for seed, result in row["per_seed"].items():
            x.append(100 * result[metric])
            y.append(i)
            paired = int(seed) in shared
            text.append(f"seed {seed}: {100 * result[metric]:.2f} %" + ("" if paired else ", unpaired"))
            symbols.append("circle" if paired else "circle-open")
    traces = [_dots(x, y, text, symbols, show=first)]
    summarised = [(i, row["summary"][metric]) for i, row in enumerate(record["rows"]) if "summary" in row]
    if summarised:
        rows, stats = zip(*summarised, strict=True)
        traces.append(_means(list(stats), list(rows), MEAN_RGB, "mean and 95 % interval", show=first))
    return traces


def _difference_traces(record: dict, metric: str, first: bool) -> list[go.Scatter]:
    """Panel (b) for one metric: guided − random per seed, and the mean and interval of each difference,
    coloured by whether the interval excludes 0."""
    seeds = record["seeds"]
    x, y, text = [], [], []
    for j, diff in enumerate(record["differences"]):
        for seed, value in zip(seeds, diff[metric]["values"], strict=True):
            x.append(100 * value)
            y.append(j)
            text.append(f"seed {seed}: {_points(value)} points")
    traces = [_dots(x, y, text, ["circle"] * len(x), show=False)]
    for shown, colour, name in ((True, SHOWN_RGB, "95 % interval excludes 0: shown"),
                                (False, SUGGESTED_RGB, "95 % interval spans 0: only suggested")):
        picked = [(j, d[metric]) for j, d in enumerate(record["differences"])
                  if excludes_zero(d[metric]) == shown]
        if picked:
            rows, stats = zip(*picked, strict=True)
            traces.append(_means(list(stats), list(rows), colour, name, show=first))
    return traces


def _category_axis(labels: list[str]) -> dict:
    """A y axis with one row per label, the first at the top."""
    return {"tickvals": list(range(len(labels))), "ticktext": [_wrap(t) for t in labels],
            "range": [len(labels) - 0.5, -0.5], "showgrid": False, "automargin": True}


def evidence_figure(record: dict) -> go.Figure:
    """(a) each row's accuracy per seed with its mean and 95 % interval, per metric; (b) when the record has
    them, the paired guided − random differences per seed with mean and interval, against 0 (dashed)."""
    diffs = record["differences"]
    panels = 2 if diffs else 1
    counts = [len(record["rows"]), len(diffs)][:panels]
    titles = [f"{name} accuracy (%)" for name in METRICS.values()]
    titles += [f"guided − random, {name} (points)" for name in METRICS.values()][: 2 * (panels - 1)]
    height = BASE_PX + ROW_PX * sum(counts)
    fig = make_subplots(rows=panels, cols=len(METRICS), shared_yaxes=True, row_heights=counts,
                        subplot_titles=titles, horizontal_spacing=0.04,
                        vertical_spacing=PANEL_GAP_PX / height)
    for col, metric in enumerate(METRICS, start=1):
        for trace in _score_traces(record, metric, first=col == 1):
            fig.add_trace(trace, row=1, col=col)
        if diffs:
            for trace in _difference_traces(record, metric, first=col == 1):
                fig.add_trace(trace, row=2, col=col)
            fig.add_vline(x=0, line={"dash": "dash", "color": ZERO_RGB, "width": 1}, row=2, col=col)
    fig.update_yaxes(**_category_axis([row["label"] for row in record["rows"]]), row=1)
    if diffs:
        fig.update_yaxes(**_category_axis([_difference_name(record, d) for d in diffs]), row=2)
    fig.update_xaxes(zeroline=False)
    fig.update_layout(template=figures.TEMPLATE, margin=EVIDENCE_MARGIN,
                      height=height,
                      legend=LEGEND)
    return fig


# ------------------------------------------------------------------------------------------- outputs
def panel(evidence: Evidence) -> EvidencePanel:
    """Figure, sentences and table of a loaded record; without one, a figure and text with its note."""
    record, note = evidence.record, f"**{evidence.note}**" if evidence.note else ""
    if record is None:
        return EvidencePanel(figures.message_figure("no ablation record to show"), note, "")
    text = [note] if note else []
    if record["differences"]:
        said = sentences(record)
        text += [f"**What is shown.** {said['shown']}", f"**What is only suggested.** {said['suggested']}"]
    return EvidencePanel(evidence_figure(record), "\n\n".join(text), table_markdown(record))


def answer(evidence: Evidence) -> dict:
    """The ``/evidence`` answer: ``{"note": ...}`` without a record; else the record, plus "sentences"
    ({"shown", "suggested"}) when it has paired differences and "note" when something is missing."""
    if evidence.record is None:
        return {"note": evidence.note}
    out = dict(evidence.record)
    if evidence.record["differences"]:
        out["sentences"] = sentences(evidence.record)
    if evidence.note:
        out["note"] = evidence.note
    return out
