"""scripts/modelnet40_table.py: the README's ModelNet40 table comes from the evaluation files."""

import json

from helpers import script_module


def test_table_reads_svm_and_few_shot_files_and_marks_missing_ones(tmp_path):
    table = script_module("modelnet40_table")
    run = tmp_path / "run"
    run.mkdir()
    (run / "mn40_svm.json").write_text(json.dumps({"accuracy": 0.87654, "std": 0.0}))
    (run / "mn40_fewshot_5w10s.json").write_text(json.dumps({"mean": 0.939, "std": 0.0464, "accs": []}))
    lines = table.table({"mine": run}).splitlines()
    assert lines[0] == "| protocol | mine | paper (I2P-MAE) |" and lines[1] == "|---|---|---|"
    assert "| ModelNet40 linear SVM, test | 87.65 | 93.4 |" in lines
    assert "| ModelNet40 5-way 10-shot | 93.9 ± 4.6 | 97.0 |" in lines
    assert "| ModelNet10 linear SVM, test | – | – |" in lines  # no file: no number
    assert len(lines) == 2 + len(table.ROWS)
