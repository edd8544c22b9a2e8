"""The core package stays importable without the app's heavy dependencies."""

import subprocess
import sys

CORE_MODULES = (
    "i2pmae", "i2pmae.io", "i2pmae.geometry", "i2pmae.projection", "i2pmae.teachers", "i2pmae.masking",
    "i2pmae.model", "i2pmae.losses", "i2pmae.checkpoints", "i2pmae.data", "i2pmae.train",
    "i2pmae.evaluate", "i2pmae.explore", "i2pmae.cli",
)


def test_core_imports_no_gradio():
    code = f"import sys\nfor m in {CORE_MODULES!r}: __import__(m)\n"
    code += "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'plotly', 'app'))\n"
    code += "assert not bad, bad\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "i2pmae.cli", "--help"], capture_output=True, text=True, check=True, timeout=99
    ).stdout
    for command in ("pretrain", "finetune", "svm", "fewshot", "explore", "classify", "encode", "checkpoint",
                    "data"):
        assert command in out
