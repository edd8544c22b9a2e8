"""The core package stays importable without the app's heavy dependencies."""

import pkgutil
import subprocess
import sys

import i2pmae

# Every module of the package (``__main__`` would run the CLI on import).
CORE_MODULES = ("i2pmae", *(m.name for m in pkgutil.walk_packages(i2pmae.__path__, "i2pmae.")
                            if not m.name.endswith("__main__")))


def test_every_module_is_checked():
    assert {"i2pmae.config", "i2pmae.engine", "i2pmae.teacher_cache", "i2pmae.data.layouts",
            "i2pmae.cli.explore"} <= set(CORE_MODULES)


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
