"""Best-of-N on the shipped Qwen2.5-Math best-of-8 set (100 MATH problems x 8 CoT responses).

Majority vote, the shipped RM scores (Best-of-N and raw-weighted vote) and the oracle, for
N = 1, 2, 4, 8, twice: with the correctness labels and extracted answers that ship with the file
(Qwen's grader) and regraded by primekit's grader. For reference, the N=8 numbers under the
conventions of Qwen's ``rm_maj_eval.py`` (string grouping, first-seen tie-breaking, first argmax)
are computed from the same data.

    .venv/bin/python benchmarks/bon_qwen_set.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from primekit.arguments import PRMReadingArguments
from primekit.bon import report
from primekit.bon.commands import RerankArguments, run_rerank
from primekit.bon.data import load_problems
from primekit.eval.metrics import maj_at_k_scores
from primekit.io import atomic_write_text
from primekit.paths import data_dir

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python benchmarks/bon_qwen_set.py"


def qwen_script_conventions(path: Path) -> dict[str, float]:
    """maj@8 and rm@8 as Qwen's script counts them: answers grouped by exact string, a tie goes
    to the answer seen first, and the RM pick is the first candidate with the highest score."""
    problems = load_problems(path)
    maj = maj_at_k_scores([p.preds for p in problems], [p.correct for p in problems], 8,
                          equivalent=lambda a, b: a == b)
    rm = [p.correct[int(np.argmax(p.scores))] for p in problems]
    return {"maj@8": 100 * float(np.mean(maj)), "rm@8": 100 * float(np.mean(rm))}


def main() -> int:
    source = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"
    if not source.is_file():
        print(f"missing {source} (set PRIMEKIT_DATA)", file=sys.stderr)
        return 1
    sections = ["## Best-of-N on the shipped Qwen2.5-Math best-of-8 set", "",
                f"`{COMMAND}` (equivalently `prime-bon rerank <data>/bon/qwen25math_math_cot_100.jsonl"
                " [--regrade]`). 100 MATH test problems, 8 Qwen2.5-Math CoT responses each, scored "
                "by the RM scores that ship with the file (`pred_score`). Accuracy in %, "
                "[95% percentile-bootstrap interval over problems]; N < 8 averages all "
                "N-subsets of each problem's 8 responses; ties are broken uniformly at random "
                "(the expectation is reported). Answers are grouped by primekit's grader "
                "(`is_equivalent`); the weighted vote sums the raw RM scores of an answer's "
                "responses.", ""]
    results, labels = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for regrade in (False, True):
            out = Path(scratch) / ("regraded" if regrade else "shipped")
            result = run_rerank(RerankArguments(input=str(source), out=str(out), regrade=regrade),
                                PRMReadingArguments(aggregate="last"), show_progress=False)
            results[regrade] = result
            label = ("regraded by primekit's grader (extract_answer + grade)" if regrade
                     else "shipped labels and answers (Qwen's grader)")
            sections += [f"### Correctness: {label}", "",
                         report.markdown_table(result.summary, result.methods, result.ns), ""]
            labels[regrade] = np.concatenate([
                json.loads(line)["correct"] for line in (out / "reranked.jsonl").read_text().splitlines()
            ]).astype(bool)
            if not regrade:
                shutil.copy(out / "curve.png", RESULTS / "bon_qwen_set.png")
    problems = load_problems(source)
    majority = results[False].curves["majority"][8]
    ties = [(p.id, v) for p, v in zip(problems, majority) if 0 < v < 1]
    shipped, regraded = labels[False], labels[True]
    qwen = qwen_script_conventions(source)
    sections += [f"Regrading changes {int((shipped != regraded).sum())} of {shipped.size} labels "
                 f"({int((~shipped & regraded).sum())} wrong -> right, "
                 f"{int((shipped & ~regraded).sum())} right -> wrong).", "",
                 "Under the conventions of Qwen's `rm_maj_eval.py` (exact-string answer groups, a "
                 "majority tie goes to the answer seen first, the RM pick is the first highest "
                 f"score) the same data give maj@8 = {qwen['maj@8']:.1f} and rm@8 = "
                 f"{qwen['rm@8']:.1f}. At N=8 the majority vote ties a right and a wrong answer on "
                 + ", ".join(f"idx {pid}" for pid, _ in ties)
                 + ", each counted here as the expected accuracy of a uniform tie-break.", "",
                 "![accuracy vs N](bon_qwen_set.png)", ""]
    text = "\n".join(sections)
    atomic_write_text(RESULTS / "bon_qwen_set.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
