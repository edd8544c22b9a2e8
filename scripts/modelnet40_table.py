"""The README's ModelNet40 table from the JSON results of ``scripts/eval_modelnet40.sh``, beside the paper.

    .venv/bin/python scripts/modelnet40_table.py NAME=FOLDER [NAME=FOLDER ...]

Each FOLDER holds one checkpoint's results (``mn10_svm.json``, ``mn40_fewshot_5w10s.json``, ...); a missing
file prints as "–". Nothing is typed in by hand: the numbers are read from the files the commands wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (file stem, what, the paper's number: I2P-MAE, ViT-B-sized, CLIP teacher, ShapeNet pre-training)
ROWS = (
    ("mn10_svm_val", "ModelNet10 linear SVM, validation (20 % of train)", None),
    ("mn40_svm_val", "ModelNet40 linear SVM, validation (20 % of train)", None),
    ("mn10_svm", "ModelNet10 linear SVM, test", None),
    ("mn40_svm", "ModelNet40 linear SVM, test", "93.4"),
    ("mn40_fewshot_5w10s", "ModelNet40 5-way 10-shot", "97.0"),
    ("mn40_fewshot_5w20s", "ModelNet40 5-way 20-shot", "98.3"),
    ("mn40_fewshot_10w10s", "ModelNet40 10-way 10-shot", "92.6"),
    ("mn40_fewshot_10w20s", "ModelNet40 10-way 20-shot", "95.5"),
    ("mn10_fewshot_5w10s", "ModelNet10 5-way 10-shot (support and queries from test)", None),
)


def cell(path: Path) -> str:
    """One result file as a percentage (SVM: accuracy; few-shot: mean ± std over the folds)."""
    if not path.is_file():
        return "–"
    result = json.loads(path.read_text())
    if "accuracy" in result:
        return f"{100 * result['accuracy']:.2f}"
    return f"{100 * result['mean']:.1f} ± {100 * result['std']:.1f}"


def table(columns: dict[str, Path]) -> str:
    head = "| protocol | " + " | ".join(columns) + " | paper (I2P-MAE) |"
    lines = [head, "|---" * (len(columns) + 2) + "|"]
    for stem, what, paper in ROWS:
        cells = [cell(folder / f"{stem}.json") for folder in columns.values()]
        lines.append(f"| {what} | " + " | ".join(cells) + f" | {paper or '–'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("columns", nargs="+", help="NAME=FOLDER, one column each")
    args = parser.parse_args()
    columns = {}
    for column in args.columns:
        name, sep, folder = column.partition("=")
        if not sep:
            parser.error(f"expected NAME=FOLDER, got {column!r}")
        columns[name] = Path(folder)
    print(table(columns))


if __name__ == "__main__":
    main()
