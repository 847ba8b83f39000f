"""Grader throughput and fidelity: primekit's grader vs math-verify's own parse + verify, the
grader of a baseline revision (``--baseline REF``, measured the same way in a subprocess on a
``git archive`` of that revision), and the answer extraction of each evaluation protocol.

The graders run on the same pairs, one after the other:

* the 800 Best-of-N responses of ``bon/qwen25math_math_cot_100.jsonl`` against their gold
  answers (primekit: ``grade(response, gt)``; math-verify: ``verify(parse("$gt$"),
  parse(response))``), scored against Qwen2.5-Math's ``score`` labels;
* the hand-written case table of ``tests/test_grader.py`` (primekit: ``is_equivalent``;
  math-verify: ``verify(parse("$gold$"), parse("$pred$"))``), scored against its labels.

Then, per benchmark, how often the verdicts of the evaluation protocols' answer extraction
(primekit, PRIME's scripts, Qwen2.5-Math's harness; equivalence always by primekit's grader),
math-verify alone, and Qwen's own labels (where a file has them) differ, on real text: the
shipped best-of-8 responses (MATH) and each benchmark's own reference solutions (MATH-500,
Minerva Math, GSM8K: every one of them states the right answer, so a rule that marks one wrong
misreads it), with examples.

Writes a Markdown section to ``benchmarks/results/grader.md``.
Run: ``flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/grader_bench.py --baseline main``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
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
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/grader_bench.py --baseline main"

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


def measure() -> dict:
    """Verdicts and timings of the importable primekit grader (and math-verify) on both pair sets."""
    logging.disable(logging.CRITICAL)  # math-verify logs every timeout and parse failure
    bon_pairs, _ = _bon()
    table_pairs, _ = _case_table()
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
    start = time.perf_counter()
    many = grade_many(bon_pairs, processes=2)
    many_s = time.perf_counter() - start
    return {"bon": ours_bon, "bon_s": ours_bon_s, "bon_symbolic": bon_symbolic,
            "table": ours_table, "table_s": ours_table_s, "table_symbolic": table_symbolic,
            "many_s": many_s, "many_same": many == ours_bon}


def _baseline(ref: str) -> dict:
    """:func:`measure` run on the grader of git revision ``ref`` (its primekit package only)."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "primekit"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        done = subprocess.run([sys.executable, __file__, "--measure-json"], capture_output=True,
                              text=True, check=True, env={**os.environ, "PYTHONPATH": folder,
                                                          "PRIMEKIT_DATA": str(data_dir())})
    return json.loads(done.stdout.splitlines()[-1])


def _speed_rows(name: str, result: dict, mv: dict, labels: dict) -> list[str]:
    rows = []
    for key, title in (("bon", "Best-of-N responses (`grade`)"), ("table", "case table (`is_equivalent`)")):
        rows.append(f"| {name} | {title} | {len(labels[key])} | {result[key + '_s']:.2f} | "
                    f"{mv[key + '_s']:.2f} | {mv[key + '_s'] / result[key + '_s']:.1f}x | "
                    f"{_agreement(result[key], labels[key])} | {_agreement(mv[key], labels[key])} | "
                    f"{result[key + '_symbolic']} |")
    return rows


PROTOCOL_RULES = ("primekit", "prime", "qwen25-math")


def _protocol_verdicts(texts: list[str], golds: list[str], benchmark: str) -> dict[str, list[bool]]:
    """Verdict of each protocol's extraction (+ primekit's equivalence), and math-verify's."""
    from primekit.eval.runner import grade_responses

    verdicts = {rule: [ok for _, ok in grade_responses(texts, golds, processes=2, protocol=rule,
                                                       benchmark=benchmark)]
                for rule in PROTOCOL_RULES}
    verdicts["math-verify"] = [_math_verify(text, f"${gold}$") for text, gold in zip(texts, golds)]
    return verdicts


def _real_text_sets() -> list[tuple[str, str, list[str], list[str], list[bool] | None]]:
    """(name, benchmark, texts, golds, labels or None) of real text with known verdicts."""
    from primekit.eval.benchmarks import load_benchmark

    records = [json.loads(line) for line in
               (data_dir() / "bon" / "qwen25math_math_cot_100.jsonl").read_text().splitlines() if line.strip()]
    sets = [("best-of-8 responses (Qwen2.5-Math, MATH)", "math500",
             [resp for r in records for resp in r["response"]],
             [r["gt"] for r in records for _ in r["response"]],
             [bool(x) for r in records for x in r["score"]])]
    for benchmark, limit, field in (("math500", None, "solution"), ("minerva_math", None, "solution"),
                                    ("gsm8k", 500, "raw_answer")):
        problems = load_benchmark(benchmark, limit=limit)
        sets.append((f"{benchmark} reference solutions", benchmark,
                     [str(p.metadata[field]) for p in problems], [p.answer for p in problems],
                     [True] * len(problems)))
    return sets


def _protocol_section() -> list[str]:
    lines = ["", "### Verdicts by answer-extraction rule on real text", "",
             "Share graded right (%) under each rule; for the reference solutions every text is "
             "right, so anything below 100 is a misreading. `prime`/`qwen25-math`: that "
             "protocol's extraction with primekit's equivalence; math-verify: its own "
             "parse + verify of the whole text; Qwen labels: Qwen2.5-Math's `score`. "
             "'differs' counts texts where the rule's verdict differs from primekit's.", "",
             "| text | n | primekit | prime | qwen25-math | math-verify | Qwen labels | differs from primekit (prime / qwen25-math / math-verify / labels) |",
             "|---|---|---|---|---|---|---|---|"]
    examples = []
    for name, benchmark, texts, golds, labels in _real_text_sets():
        verdicts = _protocol_verdicts(texts, golds, benchmark)
        if labels is not None and not all(labels):
            verdicts["labels"] = labels
        ours = verdicts["primekit"]
        rate = {key: f"{100 * sum(v) / len(v):.1f}" for key, v in verdicts.items()}
        differs = [str(sum(a != b for a, b in zip(ours, verdicts[key]))) if key in verdicts else "–"
                   for key in ("prime", "qwen25-math", "math-verify", "labels")]
        lines.append(f"| {name} | {len(texts)} | {rate['primekit']} | {rate['prime']} | "
                     f"{rate['qwen25-math']} | {rate['math-verify']} | {rate.get('labels', '–')} | "
                     f"{' / '.join(differs)} |")
        for key in ("prime", "qwen25-math", "math-verify"):
            shown = 0
            for text, gold, a, b in zip(texts, golds, ours, verdicts[key]):
                if a != b and shown < 2:
                    shown += 1
                    tail = text.strip()[-90:].replace("\n", " ").replace("|", "\\|")
                    examples.append(f"- {name}, {key} {b} vs primekit {a}: gold `{gold}`, "
                                    f"text ends `…{tail}`")
    return lines + ["", "Examples of differing verdicts:", "", *examples]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision whose grader is measured beside this one")
    parser.add_argument("--measure-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_json:
        print(json.dumps(measure()))
        return 0
    bon_pairs, bon_labels = _bon()
    table_pairs, table_labels = _case_table()
    current = measure()
    baseline = _baseline(args.baseline) if args.baseline else None
    mv_bon, mv_bon_s = _timed(lambda r, g: _math_verify(r, f"${g}$"), bon_pairs)
    mv_table, mv_table_s = _timed(lambda p, g: _math_verify(f"${p}$", f"${g}$"), table_pairs)
    mv = {"bon": mv_bon, "bon_s": mv_bon_s, "table": mv_table, "table_s": mv_table_s}
    labels = {"bon": bon_labels, "table": table_labels}
    lines = [
        "## Answer grader: primekit vs math-verify" + (f" and the grader of `{args.baseline}`" if baseline else ""),
        "",
        f"Reproduce: `{COMMAND}` (CPU only, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run; the graders timed one after the other, "
        "after a start-up call each; the baseline grader in a subprocess of the same run).",
        "",
        "| grader | pairs | n | grader s | math-verify s | speed-up (math-verify s / grader s) "
        "| grader agreement | math-verify agreement | pairs sent to sympy |",
        "|---|---|---|---|---|---|---|---|---|",
        *_speed_rows("this revision", current, mv, labels),
    ]
    if baseline is not None:
        lines += _speed_rows(f"`{args.baseline}`", baseline, mv, labels)
    lines += [
        "",
        f"`grade_many(..., processes=2)` on the 800 responses: {current['many_s']:.2f} s "
        f"(same verdicts as `grade`: {current['many_same']}). Labels: Qwen2.5-Math's `score` for "
        "the responses, the hand-written expectations of `tests/test_grader.py` for the case table "
        "(which includes this revision's new cases).",
        "",
        "Disagreements of primekit with Qwen's labels on the Best-of-N responses:",
        "",
    ]
    disagreements = 0
    for (response, gold), verdict, label in zip(bon_pairs, current["bon"], bon_labels):
        if verdict != label:
            disagreements += 1
            pred = extract_answer(response)
            reason = REVIEWED.get((gold, pred), "not reviewed")
            lines.append(f"- gold `{gold}`, extracted `{pred}`: primekit {verdict}, Qwen {label} -- {reason}")
    if not disagreements:
        lines.append("- none")
    if baseline is not None:
        changed = [(pair, old, new) for pair, old, new in zip(table_pairs, baseline["table"], current["table"]) if old != new]
        lines += ["", f"Case-table verdicts that changed from `{args.baseline}`:", ""]
        lines += [f"- `{p}` vs `{g}`: {old} -> {new}" for (p, g), old, new in changed] or ["- none"]
    lines.append("")
    lines.append("Case-table pairs that math-verify's plain parse + verify gets wrong:")
    lines.append("")
    for (pred, gold), verdict, label in zip(table_pairs, mv_table, table_labels):
        if verdict != label:
            lines.append(f"- `{pred}` vs `{gold}`: expected {label}")
    lines += _protocol_section()
    text = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULT, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
