"""The ``evaluate`` metric module shipped with primekit (load it with ``evaluate.load(METRIC_PATH)``)."""

from pathlib import Path

METRIC_PATH = str(Path(__file__).with_name("math_accuracy.py"))
