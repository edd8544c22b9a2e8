"""Where the explorer finds its bundled files."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
MANIFEST_PATH = ASSETS_DIR / "manifest.json"  # the gallery: file, name, label, kind per shape
SUPPORT_PATH = ASSETS_DIR / "fewshot_support.npz"  # the bundled few-shot support shapes
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
EVIDENCE_PATH = REPO_ROOT / "docs" / "ablation.json"  # the seeded ablation, written by scripts/ablation.py
