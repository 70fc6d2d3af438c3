"""Golden cases: the generator (cases.generator) and the stored store (cases/golden/)."""

from pathlib import Path

GOLDEN_DIR = Path(__file__).with_name("golden")
