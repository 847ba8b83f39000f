"""Grader throughput and fidelity: primekit's grader vs math-verify's own parse + verify.

Both run in this process on the same pairs, one after the other:

* the 800 Best-of-N responses of ``bon/qwen25math_math_cot_100.jsonl`` against their gold
  answers (primekit: ``grade(response, gt)``; math-verify: ``verify(parse("$gt$"),
  parse(response))``), scored against Qwen2.5-Math's ``score`` labels;
* the hand-written case table of ``tests/test_grader.py`` (primekit: ``is_equivalent``;
  math-verify: ``verify(parse("$gold$"), parse("$pred$"))``), scored against its labels.

Writes a Markdown section to ``benchmarks/results/grader.md``.
Run: ``flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/grader_bench.py``
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

from math_verify import parse, verify

from primekit.eval import _sandbox
from primekit.eval.answer import extract_answer
from primekit.eval.grader import grade, grade_many, is_equivalent
from primekit.io import atomic_write_text
from primekit.paths import data_dir

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "grader.md"
COMMAND = "flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/grader_bench.py"

# Disagreements with Qwen's labels that were checked by hand: (gold, our extracted answer) -> why.
REVIEWED = {
    ("10{,}000", "10000"): "ours right: `10{,}000` is 10000 with a TeX thousands separator, which "
    "Qwen's `strip_string` keeps, so its label is False",
}


def _bon() -> tuple[list[tuple[str, str]], list[bool]]:
    path = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [(response, r["gt"]) for r in records for response in r["response"]]
    return pairs, [bool(s) for r in records for s in r["score"]]


def _case_table() -> tuple[list[tuple[str, str]], list[bool]]:
    spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "test_grader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    usable = [(p, g, e) for p, g, e in module.CASES if p is not None and g is not None]
    return [(str(p), str(g)) for p, g, _ in usable], [e for *_, e in usable]


def _math_verify(pred_text: str, gold_text: str) -> bool:
    try:
        return bool(verify(parse(gold_text), parse(pred_text)))
    except Exception:
        return False


def _timed(function, pairs) -> tuple[list[bool], float]:
    start = time.perf_counter()
    verdicts = [function(a, b) for a, b in pairs]
    return verdicts, time.perf_counter() - start


def _agreement(verdicts: list[bool], labels: list[bool]) -> str:
    same = sum(v == label for v, label in zip(verdicts, labels))
    return f"{same}/{len(labels)} ({100 * same / len(labels):.2f}%)"


def main() -> int:
    logging.disable(logging.CRITICAL)  # math-verify logs every timeout and parse failure
    bon_pairs, bon_labels = _bon()
    table_pairs, table_labels = _case_table()
    # Start-up outside the timings: our worker process, math-verify's LaTeX parser.
    assert is_equivalent(r"\frac{y}{3}+1", r"1+\frac{y}{3}", timeout=60)
    _math_verify("$y+1$", "$1+y$")

    symbolic_calls = 0
    compare = _sandbox.compare

    def counting_compare(*args, **kwargs):
        nonlocal symbolic_calls
        symbolic_calls += 1
        return compare(*args, **kwargs)

    _sandbox.compare = counting_compare
    ours_bon, ours_bon_s = _timed(grade, bon_pairs)
    bon_symbolic = symbolic_calls
    ours_table, ours_table_s = _timed(is_equivalent, table_pairs)
    table_symbolic = symbolic_calls - bon_symbolic
    _sandbox.compare = compare
    mv_bon, mv_bon_s = _timed(lambda r, g: _math_verify(r, f"${g}$"), bon_pairs)
    mv_table, mv_table_s = _timed(lambda p, g: _math_verify(f"${p}$", f"${g}$"), table_pairs)
    start = time.perf_counter()
    many = grade_many(bon_pairs, processes=2)
    many_s = time.perf_counter() - start

    rows = [
        ("Best-of-N responses (`grade`)", len(bon_pairs), ours_bon_s, mv_bon_s, ours_bon, mv_bon, bon_labels, bon_symbolic),
        ("case table (`is_equivalent`)", len(table_pairs), ours_table_s, mv_table_s, ours_table, mv_table, table_labels, table_symbolic),
    ]
    total_ours = ours_bon_s + ours_table_s
    total_mv = mv_bon_s + mv_table_s
    lines = [
        "## Answer grader: primekit vs math-verify",
        "",
        f"Reproduce: `{COMMAND}` (CPU only, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run; both graders timed in the same process, "
        "one after the other, after a start-up call each).",
        "",
        "| pairs | n | primekit s | math-verify s | speed-up (math-verify s / primekit s) "
        "| primekit agreement | math-verify agreement | pairs sent to sympy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, n, ours_s, mv_s, ours, mv, labels, symbolic in rows:
        lines.append(
            f"| {name} | {n} | {ours_s:.2f} | {mv_s:.2f} | {mv_s / ours_s:.1f}x | "
            f"{_agreement(ours, labels)} | {_agreement(mv, labels)} | {symbolic} |"
        )
    lines.append(
        f"| all | {len(bon_pairs) + len(table_pairs)} | {total_ours:.2f} | {total_mv:.2f} | "
        f"{total_mv / total_ours:.1f}x | {_agreement(ours_bon + ours_table, bon_labels + table_labels)} | "
        f"{_agreement(mv_bon + mv_table, bon_labels + table_labels)} | {bon_symbolic + table_symbolic} |"
    )
    lines += [
        "",
        f"`grade_many(..., processes=2)` on the 800 responses: {many_s:.2f} s "
        f"(same verdicts as `grade`: {many == ours_bon}). Labels: Qwen2.5-Math's `score` for the "
        "responses, the hand-written expectations for the case table.",
        "",
        "Disagreements of primekit with Qwen's labels on the Best-of-N responses:",
        "",
    ]
    disagreements = 0
    for (response, gold), verdict, label in zip(bon_pairs, ours_bon, bon_labels):
        if verdict != label:
            disagreements += 1
            pred = extract_answer(response)
            reason = REVIEWED.get((gold, pred), "not reviewed")
            lines.append(f"- gold `{gold}`, extracted `{pred}`: primekit {verdict}, Qwen {label} -- {reason}")
    if not disagreements:
        lines.append("- none")
    lines.append("")
    lines.append("Case-table pairs that math-verify's plain parse + verify gets wrong:")
    lines.append("")
    for (pred, gold), verdict, label in zip(table_pairs, mv_table, table_labels):
        if verdict != label:
            lines.append(f"- `{pred}` vs `{gold}`: expected {label}")
    text = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULT, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
