"""Grader throughput and fidelity: primekit's grader vs math-verify's own parse + verify, the
grader of a baseline revision (``--baseline REF``, measured the same way in a subprocess on a
``git archive`` of that revision), and the answer extraction of each evaluation protocol.

The graders run on the same pairs, one after the other:

* the 800 Best-of-N responses of ``bon/qwen25math_math_cot_100.jsonl`` against their gold
  answers (primekit: ``grade(response, gt)``; math-verify: ``verify(parse("$gt$"),
  parse(response))``), scored against Qwen2.5-Math's ``score`` labels;
* the hand-written case table of ``tests/test_grader.py`` (primekit: ``is_equivalent``;
  math-verify: ``verify(parse("$gold$"), parse("$pred$"))``), scored against its labels.

A layer audit times the same pairs with parts of primekit's in-process layers switched off, so
that math-verify decides what they decided: what each layer adds in agreement and speed.

Then, per benchmark, how often the verdicts of the evaluation protocols' answer extraction
(primekit, PRIME's scripts, Qwen2.5-Math's harness; equivalence always by primekit's grader),
math-verify alone, and Qwen's own labels (where a file has them) differ, on real text: the
shipped best-of-8 responses (MATH) and each benchmark's own reference solutions (MATH-500,
Minerva Math, GSM8K: every one of them states the right answer, so a rule that marks one wrong
misreads it), with examples.

With ``--prime_repo DIR`` (a checkout of github.com/PRIME-RL/PRIME), PRIME's own correctness
rule -- its scripts' ``match_answer`` and ``utils/grader.py:math_equal``, imported from that
checkout by ``primekit/eval/_published_worker.py`` (the worker of ``prime-eval --grader prime``) -- grades the same texts, in a subprocess with no network
and resource limits (it evaluates model text with ``eval`` and sympy), and the section lists
where it and primekit disagree. PRIME pins ``antlr4-python3-runtime==4.11.0`` for sympy's
``parse_latex``; math-verify needs 4.13.2, so give PRIME its own copy with ``--prime_path``:

    git clone https://github.com/PRIME-RL/PRIME ../upstream/PRIME-RL+PRIME   # where the tests look too
    .venv/bin/pip install --target .cache/prime-site --no-deps antlr4-python3-runtime==4.11.0
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/grader_bench.py --baseline a7b4a18 \
        --prime_repo ../upstream/PRIME-RL+PRIME --prime_path .cache/prime-site

Writes a Markdown section to ``benchmarks/results/grader.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from math_verify import parse, verify

from primekit.verifiers.math import worker
from primekit.eval._published_worker import PRIME_SCRIPTS
from primekit.eval.published import limit_worker
from primekit.verifiers.math.answer import extract_answer
from primekit.verifiers.math import grade, grade_many, is_equivalent
from primekit.io import atomic_write_text, iter_jsonl
from primekit.paths import data_dir

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "grader.md"
MAX_PRIME_EXAMPLES = 6

# Disagreements with Qwen's labels that were checked by hand: (gold, our extracted answer) -> why.
_UNIT_MARK = "primekit right: the reference solution's own answer; PRIME compares strings and sympy " \
    "parses, and neither drops the unit/degree mark"
_SUBSCRIPT = "primekit right: identical strings; PRIME's `handle_base` reads any `_` as a base " \
    "subscript and `float()` of the rest raises, before the string comparison, so the script says wrong"
REVIEWED = {
    ("10{,}000", "10000"): "ours right: `10{,}000` is 10000 with a TeX thousands separator, which "
    "Qwen's `strip_string` keeps, so its label is False",
    ("10{,}000", "9999"): "primekit right: 9999 is not 10000; `math_equal` accepts it with its "
    "relative tolerance 1e-4",
    ("10{,}000", "9999.857142857143"): "primekit right: not 10000; accepted by `math_equal`'s "
    "relative tolerance 1e-4",
    ("[-2,7]", "x \\in [-2,7]"): "primekit right: `x \\in` names the set, PRIME compares the strings",
    ("Evelyn", "\\text{Evelyn}"): "primekit right: `\\text{}` is markup; PRIME has no text normalisation",
    ("5", "x=5"): "primekit right: the solution's answer `x=5`; PRIME does not drop the variable",
    ("(\\frac{3}{5},\\frac{8}{3}]", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]"):
        "primekit right: `\\left(`/`\\right]` are sizing only",
    ("32348", "\\$32,\\!348"): _UNIT_MARK,
    ("18.90", "\\$18.90"): _UNIT_MARK,
    ("145", "145^\\circ"): _UNIT_MARK,
    ("180", "180^\\circ"): _UNIT_MARK,
}
REVIEWED.update({(answer, answer): _SUBSCRIPT for answer in (
    "\\frac{dM}{dt}=\\frac{10^{5} L_{\\odot}}{0.007 c^{2} M_{\\odot}^{6}} M^{6}",
    "\\left[P_{0}^{2 / 5}-\\frac{2}{5} g K^{-3 / 5} z\\right]^{5 / 2}",
    "\\sqrt{4 \\pi G \\rho_{0} r_{0}^{2}}", "\\arcsin{1.3 \\sin{\\theta_w}}",
    "\\frac{v_{0}}{r_{0}} \\frac{1}{\\left(1+r / r_{0}\\right)^{3 / 2}}",
    "\\frac{\\cos (2 t)}{15}+C_{1} e^{t}+C_{2} e^{-t}+C_{3} \\cos (t)+C_{4} \\sin (t)")})


def _bon_records() -> list[dict]:
    """The shipped Best-of-N file: per MATH problem, Qwen2.5-Math's responses and their labels."""
    return [record for _, record in iter_jsonl(data_dir() / "bon" / "qwen25math_math_cot_100.jsonl")]


def _bon() -> tuple[list[tuple[str, str]], list[bool]]:
    records = _bon_records()
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


def _timed_counting(function, pairs) -> tuple[list[bool], float, int]:
    """Verdicts, seconds and the number of pairs that reached the symbolic worker."""
    calls = 0
    compare = worker.compare

    def counting_compare(*args, **kwargs):
        nonlocal calls
        calls += 1
        return compare(*args, **kwargs)

    worker.compare = counting_compare
    try:
        verdicts, seconds = _timed(function, pairs)
    finally:
        worker.compare = compare
    return verdicts, seconds, calls


def _start_up() -> None:
    """Start-up outside the timings: our worker process, math-verify's LaTeX parser."""
    logging.disable(logging.CRITICAL)  # math-verify logs every timeout and parse failure
    assert is_equivalent(r"\frac{y}{3}+1", r"1+\frac{y}{3}", timeout=60)
    _math_verify("$y+1$", "$1+y$")


def measure() -> dict:
    """Verdicts and timings of the importable primekit grader on both pair sets."""
    bon_pairs, _ = _bon()
    table_pairs, _ = _case_table()
    _start_up()
    result = {}
    for key, function, pairs in (("bon", grade, bon_pairs), ("table", is_equivalent, table_pairs)):
        result[key], result[key + "_s"], result[key + "_symbolic"] = _timed_counting(function, pairs)
    start = time.perf_counter()
    many = grade_many(bon_pairs, processes=2)
    return {**result, "many_s": time.perf_counter() - start, "many_same": many == result["bon"]}


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


def _protocol_verdicts(texts: list[str], golds: list[str], benchmark: str) -> dict[str, list[bool]]:
    """Verdict of each protocol's extraction (+ primekit's equivalence), and math-verify's."""
    from primekit.eval.protocols import PROTOCOLS
    from primekit.eval.grading import grade_responses

    verdicts = {rule: [ok for _, ok in grade_responses(texts, golds, processes=2, protocol=rule,
                                                       benchmark=benchmark)]
                for rule in PROTOCOLS}
    verdicts["math-verify"] = [_math_verify(text, f"${gold}$") for text, gold in zip(texts, golds)]
    return verdicts


@dataclass
class TextSet:
    """Real text with known verdicts, and the PRIME script whose rule applies to it (if any)."""

    name: str
    benchmark: str
    texts: list[str]
    golds: list[str]
    raw_golds: list[str]  # the gold as the benchmark file has it (what PRIME's scripts read)
    labels: list[bool]
    prime_script: str | None


def _real_text_sets() -> list[TextSet]:
    from primekit.problems import load_benchmark

    records = _bon_records()
    golds = [r["gt"] for r in records for _ in r["response"]]
    sets = [TextSet("best-of-8 responses (Qwen2.5-Math, MATH)", "math500",
                    [resp for r in records for resp in r["response"]], golds, golds,
                    [bool(x) for r in records for x in r["score"]], "math")]
    for benchmark, limit, field, script in (("math500", None, "solution", "math"),
                                            ("minerva_math", None, "solution", "math"),
                                            ("gsm8k", 500, "raw_answer", None)):
        problems = load_benchmark(benchmark, limit=limit)
        sets.append(TextSet(f"{benchmark} reference solutions", benchmark,
                            [str(p.metadata[field]) for p in problems], [p.answer for p in problems],
                            [str(p.metadata.get("raw_answer", p.answer)) for p in problems],
                            [True] * len(problems), script))
    return sets


def _rate(verdicts: list[bool]) -> str:
    return f"{100 * sum(verdicts) / len(verdicts):.1f}"


def _count_differ(a: list[bool], b: list[bool]) -> int:
    return sum(x != y for x, y in zip(a, b))


def _tail(text: str) -> str:
    return text.strip()[-90:].replace("\n", " ").replace("|", "\\|")


def _protocol_section(sets: list[TextSet], verdicts: list[dict[str, list[bool]]]) -> list[str]:
    lines = ["", "### Verdicts by answer-extraction rule on real text", "",
             "Share graded right (%) under each rule; for the reference solutions every text is "
             "right, so anything below 100 is a misreading. `prime`/`qwen25-math`: that "
             "protocol's extraction with primekit's equivalence; math-verify: its own "
             "parse + verify of the whole text; Qwen labels: Qwen2.5-Math's `score`. "
             "'differs' counts texts where the rule's verdict differs from primekit's.", "",
             "| text | n | primekit | prime | qwen25-math | math-verify | Qwen labels | differs from primekit (prime / qwen25-math / math-verify / labels) |",
             "|---|---|---|---|---|---|---|---|"]
    examples = []
    for text_set, by_rule in zip(sets, verdicts):
        by_rule = dict(by_rule)
        if not all(text_set.labels):
            by_rule["labels"] = text_set.labels
        ours = by_rule["primekit"]
        rate = {key: _rate(v) for key, v in by_rule.items()}
        differs = [str(_count_differ(ours, by_rule[key])) if key in by_rule else "–"
                   for key in ("prime", "qwen25-math", "math-verify", "labels")]
        lines.append(f"| {text_set.name} | {len(ours)} | {rate['primekit']} | {rate['prime']} | "
                     f"{rate['qwen25-math']} | {rate['math-verify']} | {rate.get('labels', '–')} | "
                     f"{' / '.join(differs)} |")
        for key in ("prime", "qwen25-math", "math-verify"):
            shown = 0
            for text, gold, a, b in zip(text_set.texts, text_set.golds, ours, by_rule[key]):
                if a != b and shown < 2:
                    shown += 1
                    examples.append(f"- {text_set.name}, {key} {b} vs primekit {a}: gold `{gold}`, "
                                    f"text ends `…{_tail(text)}`")
    return lines + ["", "Examples of differing verdicts:", "", *examples]


# ----------------------------------------------------------------------------------------------
# layer audit: what the in-process layers add over math-verify's own configuration

# Parts of the in-process layers, each switched off in this process only (attributes of
# primekit.verifiers.math.grader replaced), so that the pairs they settled go on to math-verify.
LAYER_AUDIT: tuple[tuple[str, dict], ...] = (
    ("full grader", {}),
    ("without shapes (tuples, intervals, sets, matrices)", {"_compare_shapes": lambda pred, gold: None}),
    ("without the numeric layer (numbers and shapes)",
     {"evaluate": lambda text: None, "_compare_shapes": lambda pred, gold: None}),
)


def _layer_audit(bon_pairs, table_pairs, labels: dict, mv: dict) -> list[str]:
    from primekit.verifiers.math import grader as grader_module

    lines = ["", "### Layer audit: each in-process layer against math-verify doing its pairs", "",
             "primekit's `grade` / `is_equivalent` with a part of its in-process layers switched "
             "off (in the benchmark process only), so that the pairs it settled go on to "
             "math-verify in the sandbox; timed one after the other in this run. Agreement: with "
             "Qwen's labels (responses) and the case table's expectations.", "",
             "| grader | responses s | responses agreement | responses to sympy | case table s | "
             "case table agreement | case table to sympy | verdicts changed (responses / table) |",
             "|---|---|---|---|---|---|---|---|"]
    runs = {}
    for name, patches in LAYER_AUDIT:
        saved = {attribute: getattr(grader_module, attribute) for attribute in patches}
        for attribute, value in patches.items():
            setattr(grader_module, attribute, value)
        try:
            runs[name] = {"bon": _timed_counting(grade, bon_pairs),
                          "table": _timed_counting(is_equivalent, table_pairs)}
        finally:
            for attribute, value in saved.items():
                setattr(grader_module, attribute, value)
    runs["math-verify alone"] = {key: (mv[key], mv[key + "_s"], len(mv[key])) for key in ("bon", "table")}
    full = runs["full grader"]
    for name, run in runs.items():
        cells = []
        for key in ("bon", "table"):
            verdicts, seconds, symbolic = run[key]
            cells += [f"{seconds:.2f}", _agreement(verdicts, labels[key]), str(symbolic)]
        changed = [str(_count_differ(full[key][0], run[key][0])) for key in ("bon", "table")]
        lines.append(f"| {name} | {' | '.join(cells)} | {' / '.join(changed)} |")
    lines += ["", "Case-table pairs the numeric layer gets right and math-verify (behind the string "
              "layer) gets wrong:", ""]
    without = runs["without the numeric layer (numbers and shapes)"]["table"][0]
    lost = [f"- `{p}` vs `{g}`: expected {label}" for (p, g), ours, theirs, label
            in zip(table_pairs, full["table"][0], without, labels["table"]) if ours == label != theirs]
    return lines + (lost or ["- none"])



# ----------------------------------------------------------------------------------------------
# PRIME's own correctness rule, imported from a checkout of PRIME-RL/PRIME (``--prime_repo``)

PRIME_PAIR_SECONDS = 30.0  # wall limit per pair; past it the worker is killed and restarted
PRIME_WORKER = REPO / "primekit" / "eval" / "_published_worker.py"


class _PrimeRule:
    """PRIME's rule in a subprocess with no network (``unshare --net``), limited address space,
    CPU time and file size, an empty working folder, and a wall limit per pair."""

    def __init__(self, checkout: Path, extra_path: str | None) -> None:
        if not (checkout / PRIME_SCRIPTS["math"]).exists():
            raise SystemExit(f"--prime_repo {checkout}: no {PRIME_SCRIPTS['math']} there "
                             "(expected a checkout of github.com/PRIME-RL/PRIME)")
        # absolute: the worker runs in an empty folder of its own
        self.checkout = checkout.resolve()
        self.extra_path = str(Path(extra_path).resolve()) if extra_path else None
        self.folder = tempfile.TemporaryDirectory()
        self.process: subprocess.Popen | None = None
        self.timeouts = 0

    def _start(self) -> None:
        path = [p for p in (self.extra_path, str(REPO)) if p]
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(path),
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "PRIMEKIT_DATA": str(data_dir())}
        self.process = subprocess.Popen(
            ["unshare", "--net", sys.executable, str(PRIME_WORKER), "prime-scripts", str(self.checkout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=self.folder.name, env=env, preexec_fn=limit_worker)
        if self._reply(120.0) is None:
            raise SystemExit("PRIME's grader did not start in its sandbox (unshare --net needs "
                             "root or user namespaces; its imports may fail: run the worker by hand)")

    def _reply(self, seconds: float) -> dict | None:
        import select

        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        line = self.process.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
            self.process = None

    def judge(self, script: str, response: str, gold: str) -> tuple[bool, str | None]:
        """(PRIME's verdict, the answer its script extracted); a pair past the wall limit is wrong."""
        if self.process is None:
            self._start()
        self.process.stdin.write(json.dumps({"script": script, "response": response, "gold": gold}) + "\n")
        self.process.stdin.flush()
        reply = self._reply(PRIME_PAIR_SECONDS)
        if reply is None:
            self.timeouts += 1
            self._stop()
            return False, None
        return reply["equal"], reply["extracted"]

    def close(self) -> None:
        self._stop()
        self.folder.cleanup()


def _prime_verdicts(sets: list[TextSet], checkout: Path, extra_path: str | None
                    ) -> dict[str, tuple[list[bool], list[str | None], float, int]]:
    """PRIME's verdicts, extracted answers, seconds and wall-limit kills per set it applies to."""
    rule = _PrimeRule(checkout, extra_path)
    results = {}
    try:
        for text_set in sets:
            if text_set.prime_script is None:
                continue
            start, timeouts = time.perf_counter(), rule.timeouts
            judged = [rule.judge(text_set.prime_script, text, gold)
                      for text, gold in zip(text_set.texts, text_set.raw_golds)]
            results[text_set.name] = ([v for v, _ in judged], [x for _, x in judged],
                                      time.perf_counter() - start, rule.timeouts - timeouts)
    finally:
        rule.close()
    return results


def _prime_section(sets: list[TextSet], verdicts: list[dict[str, list[bool]]], checkout: Path,
                   extra_path: str | None) -> list[str]:
    ours_by_set = dict(zip((s.name for s in sets), verdicts))
    prime = _prime_verdicts(sets, checkout, extra_path)
    fallback = _prime_verdicts(sets, checkout, None) if extra_path else None
    lines = ["", "### PRIME's own rule, run from a PRIME checkout", "",
             f"`--prime_repo {checkout}` (PRIME-RL/PRIME; its `eval/` at `{_prime_commit(checkout)}`)"
             ": each script's `match_answer` and `math_equal` imported from the checkout and "
             "applied per response as the script's `run` loop does (gold as the benchmark file "
             "has it; AIME/AMC strips; the pi retry; an exception is wrong), in a subprocess with "
             "no network (`unshare --net`), 4 GiB of address space, no file writes and "
             f"{PRIME_PAIR_SECONDS:.0f} s per pair. PRIME pins antlr4-python3-runtime 4.11 "
             "(sympy's `parse_latex`), math-verify needs 4.13.2: "
             + (f"4.11.0 came from `--prime_path {extra_path}` (`pip install --target`)."
                if extra_path else "without `--prime_path`, `parse_latex` fails and PRIME's "
                "grader falls back to `parse_expr` alone."),
             "'PRIME rule' is PRIME's extraction and equivalence; 'prime + primekit' is PRIME's "
             "extraction with primekit's equivalence, so their differences are differences of "
             "the equivalence rule alone. The Minerva row applies the MATH script's rule (PRIME "
             "grades Minerva with its Qwen2.5-Math harness); gsm8k has no PRIME script.", "",
             "| text | script | n | primekit | PRIME rule | differs from primekit | differs from prime + primekit | killed at the wall limit | PRIME s |",
             "|---|---|---|---|---|---|---|---|---|"]
    examples = []
    for text_set in sets:
        if text_set.name not in prime:
            continue
        theirs, extracted, seconds, killed = prime[text_set.name]
        ours = ours_by_set[text_set.name]
        n = len(theirs)

        def share(count: int) -> str:
            return f"{count} ({100 * count / n:.1f}%)"

        lines.append(f"| {text_set.name} | `{PRIME_SCRIPTS[text_set.prime_script]}` | {n} | "
                     f"{_rate(ours['primekit'])} | {_rate(theirs)} | "
                     f"{share(_count_differ(ours['primekit'], theirs))} | "
                     f"{share(_count_differ(ours['prime'], theirs))} | {killed} | {seconds:.1f} |")
        differing = list(dict.fromkeys((gold, answer, a, b) for gold, answer, a, b
                                       in zip(text_set.golds, extracted, ours["prime"], theirs) if a != b))
        for gold, answer, a, b in differing[:MAX_PRIME_EXAMPLES]:
            reason = REVIEWED.get((gold, answer), "not reviewed")
            shown = (answer or "")[:80].replace("|", "\\|")
            examples.append(f"- {text_set.name}: gold `{gold}`, PRIME extracted `{shown}`: "
                            f"PRIME {b}, primekit {a} -- {reason}")
        if len(differing) > MAX_PRIME_EXAMPLES:
            examples.append(f"- {text_set.name}: {len(differing) - MAX_PRIME_EXAMPLES} more distinct pairs")
    lines += ["", "Distinct pairs where the equivalence rules disagree (same extracted answer; "
              "the reference solutions are right by construction):", "",
              *(examples or ["- none"])]
    if fallback is not None:
        changed = sum(_count_differ(prime[name][0], fallback[name][0]) for name in prime)
        total = sum(len(prime[name][0]) for name in prime)
        lines += ["", f"With math-verify's antlr4 4.13.2 instead (PRIME's `parse_latex` then "
                  f"fails and its `parse_expr` fallback decides), {changed} of {total} PRIME "
                  "verdicts change."]
    return lines


def _prime_commit(checkout: Path) -> str:
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "a copy without git metadata"


def _command() -> str:
    """This run's command line, as the report's reproducing command."""
    return "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/grader_bench.py " + shlex.join(sys.argv[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision whose grader is measured beside this one")
    parser.add_argument("--prime_repo", type=Path,
                        help="checkout of github.com/PRIME-RL/PRIME: also run PRIME's own grading "
                        "rule (sandboxed subprocess) on the real-text sets")
    parser.add_argument("--prime_path",
                        help="folder put first on PRIME's PYTHONPATH for its pinned packages, e.g. "
                        "`pip install --target DIR antlr4-python3-runtime==4.11.0` (math-verify "
                        "needs 4.13.2, so it cannot share the environment)")
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
        f"Reproduce: `{_command()}` (CPU only, {os.cpu_count()} cores, load average "
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
    lines += _layer_audit(bon_pairs, table_pairs, labels, mv)
    sets = _real_text_sets()
    verdicts = [_protocol_verdicts(t.texts, t.golds, t.benchmark) for t in sets]
    lines += _protocol_section(sets, verdicts)
    if args.prime_repo is not None:
        lines += _prime_section(sets, verdicts, args.prime_repo, args.prime_path)
    text = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULT, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
