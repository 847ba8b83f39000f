r"""Is a predicted answer equivalent to the gold answer?

Three layers, cheapest first; each pair stops at the first that decides:

1. **string**: equal normal forms (``normalize_answer``), case-insensitively; a gold choice
   letter (A-E) is compared with the choice the prediction names;
2. **numbers and shapes** (``numeric``): both sides evaluated exactly (fractions, decimals,
   scientific notation, radicals, pi, percentages read either as a number or as a hundredth),
   also element-wise for tuples, intervals, sets, unions of intervals and matrices;
3. **symbolic**: math-verify's ``parse`` + ``verify`` (expressions, equations, relations, sets,
   matrices), in a worker process under a hard time and memory limit (``worker``).

Layer 3 is math-verify as it is configured; layers 1-2 stay only for what it cannot do (the
layer audit in BENCHMARKS.md, "Answer grader", measures each):

* layer 1 decides a choice letter against an option named with its text ("(C) 12" vs "C"),
  which math-verify reads as a product of symbols, and settles equal strings in-process;
* layer 2 accepts an answer rounded to the digits it shows (0.3333 vs 1/3, 1.4142 vs
  sqrt(2), 6.2832 vs 2 pi, also inside intervals), a percentage as a hundredth (50% vs 0.5),
  a decimal comma in a prediction and the ``4.5e33`` notation, none of which math-verify
  accepts; it also keeps most pairs it decides away from the symbolic worker, which is slower;
* its shapes step alone (tuples, intervals, sets, matrices element-wise) decides pairs such as
  (0.6,2.6667] vs (3/5,8/3], which math-verify gets wrong.

The nesting limit is ``brackets.MAX_NESTING`` for every layer, and ``brackets`` is the one
bracket scanner.

Steps 1-2 run in-process in microseconds. Model output is never executed: steps 1-2 are
regular expressions and a small arithmetic parser, and step 3 hands LaTeX to latex2sympy's
grammar-based parser (no ``eval``/``sympify``/``parse_expr``). Any timeout or error means "not
equivalent", never an exception.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from primekit.verifiers.math import worker
from primekit.verifiers.math.answer import (
    MAX_ANSWER_CHARS,
    assigned_name,
    clean_answer,
    extract_answer,
    final_answer_part,
    normalize_answer,
)
from primekit.verifiers.math.brackets import MAX_NESTING, encloses, nesting, split_top_level
from primekit.verifiers.math.numeric import Number, evaluate, has_huge_power, numbers_equal

__all__ = ["DEFAULT_TIMEOUT", "GRADER_VERSION", "is_equivalent", "grade", "grade_many", "grade_answers"]

# Seconds for the symbolic step, including (once per process) the worker's start-up of about
# a second, which can take several on a busy machine.
DEFAULT_TIMEOUT = 10.0
# Recorded in every summary.json: bump it whenever a verdict can change. 2: the decimal-comma
# reading never applies to a gold answer, nor to a prediction when the gold lists several answers.
# 3: a function's equation under another name (y = ... vs f(x) = ...) compares the right-hand
# sides; degrees inside trigonometric functions are radians for the symbolic step; i is the
# imaginary unit when that alone makes two sides equal; a unit written after a number on one side
# only (or the same unit on both) is set aside; \mathrm{E} is never a choice letter.
GRADER_VERSION = "3"
MAX_SYMBOLIC_CHARS = 1000
MAX_GROUP_ITEMS = 64
_PERCENT = re.compile(r"%|\bpercent(?:age)?\b|\bpct\b", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


def _as_text(value: object) -> str | None:
    """Answers may arrive as numbers (AMC gold answers are floats such as 27.0)."""
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)


# ----------------------------------------------------------------------------------------------
# step 2: numbers and shapes


def _predicted_number(pred: str, gold: str) -> Number | None:
    """Value of a normalised predicted answer. A decimal comma ("1,22" = 1.22) is read only in a
    prediction, and only when the gold answer is a single value: a gold "-3,0" is two answers
    (OlympiadBench lists multiple answers that way), never the number -3.0."""
    value = evaluate(pred)
    if value is None and _DECIMAL_COMMA.fullmatch(pred) and "," not in gold:
        value = evaluate(pred.replace(",", "."))
    return value


def _hundredth(number: Number) -> Number:
    place = number.last_place / 100 if number.last_place is not None else None
    return Number(number.value / 100, number.significant_digits, place)


def _numbers_match(pred: Number, gold: Number, pred_percent: bool, gold_percent: bool) -> bool:
    """Equal values; a side written with % may also be read as a hundredth (50% = 0.5)."""
    pred_readings = [pred, _hundredth(pred)] if pred_percent else [pred]
    gold_readings = [gold, _hundredth(gold)] if gold_percent else [gold]
    return any(numbers_equal(p, g) for p in pred_readings for g in gold_readings)


@dataclass(frozen=True)
class _Group:
    """A bracketed list of items: tuple/interval ``(a,b]``, set ``{a,b}``, bare ``a,b``,
    matrix (items are rows) or matrix row (items are cells)."""

    opener: str
    closer: str
    items: tuple[str, ...]


def _group(text: str) -> _Group | None:
    matrix = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", text)
    if matrix and "pmatrix" not in matrix.group(1):
        rows = [row for row in matrix.group(1).split("\\\\") if row]
        return _Group("matrix", "", tuple(rows))
    if len(text) >= 2 and text[0] in "([{" and text[-1] in ")]}" and encloses(text):
        items = split_top_level(text[1:-1], ",")
        if items is None or (len(items) == 1 and text[0] != "{"):
            return None
        return _Group(text[0], text[-1], tuple(items))
    items = split_top_level(text, ",")
    if items is not None and len(items) > 1:
        return _Group("", "", tuple(items))
    return None


def _compare_items(a: str, b: str) -> bool | None:
    if a.casefold() == b.casefold():
        return True
    na, nb = evaluate(a), evaluate(b)
    if na is not None and nb is not None:
        return numbers_equal(na, nb)
    ga, gb = _group(a), _group(b)
    if ga is not None and gb is not None:
        return _compare_groups(ga, gb)
    return None


def _match_ordered(xs: tuple[str, ...], ys: tuple[str, ...], same: Callable) -> bool | None:
    if len(xs) != len(ys):
        return False
    verdicts = [same(x, y) for x, y in zip(xs, ys)]
    if False in verdicts:
        return False
    return True if all(verdicts) else None


def _match_unordered(xs, ys, same: Callable) -> bool | None:
    """Multiset equality under ``same``; None when some comparison is undecided."""
    if len(xs) != len(ys):
        return False if all(evaluate(v) is not None for v in (*xs, *ys)) else None
    unused = list(ys)
    for x in xs:
        verdicts = [same(x, y) for y in unused]
        if True in verdicts:
            unused.pop(verdicts.index(True))
        elif None in verdicts:
            return None
        else:
            return False
    return True


def _compare_rows(a: str, b: str) -> bool | None:
    return _match_ordered(tuple(a.split("&")), tuple(b.split("&")), _compare_items)


def _compare_groups(a: _Group, b: _Group) -> bool | None:
    if max(len(a.items), len(b.items)) > MAX_GROUP_ITEMS:
        return None
    if "matrix" in (a.opener, b.opener):
        return _match_ordered(a.items, b.items, _compare_rows) if a.opener == b.opener else None
    unordered = ("", "{")
    if a.opener in unordered and b.opener in unordered:
        return _match_unordered(a.items, b.items, _compare_items)
    if (a.opener, a.closer) == (b.opener, b.closer) or a.opener in unordered or b.opener in unordered:
        return _match_ordered(a.items, b.items, _compare_items)
    return False  # different interval ends: [0,1) is not [0,1]


def _compare_shapes(pred: str, gold: str) -> bool | None:
    """Element-wise comparison of tuples, intervals, sets, unions and matrices."""
    pred_union, gold_union = pred.split("\\cup"), gold.split("\\cup")
    if len(pred_union) > 1 or len(gold_union) > 1:
        if len(pred_union) != len(gold_union) or len(pred_union) > MAX_GROUP_ITEMS:
            return None
        return _match_unordered(pred_union, gold_union, _compare_items)
    pred_group, gold_group = _group(pred), _group(gold)
    if pred_group is None or gold_group is None:
        return None
    return _compare_groups(pred_group, gold_group)


# ----------------------------------------------------------------------------------------------
# steps 1-2 together


def _choice_letter(raw: str, normalized: str) -> str | None:
    """The option a prediction names: "C", "(C)", "\\text{(C)}", "(C) 12", "C: 12"."""
    if re.fullmatch(r"[A-E]", normalized):
        return normalized
    cleaned = clean_answer(raw)
    letters = re.findall(r"\(([A-E])\)|(?<![A-Za-z\\])([A-E])(?![A-Za-z])", cleaned)
    return (letters[-1][0] or letters[-1][1]) if letters else None


_FUNCTION_NAME = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?\(([A-Za-z])\)")
_DEPENDENT_NAME = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?")


def _same_function(pred: str, gold: str) -> bool:
    """Two equations that define the same function under different names: ``y = ...``,
    ``f(x) = ...``, ``g(x) = ...`` (at least one in function notation; two in function notation
    take the same argument). ``x = 3`` vs ``y = 3`` are two variables, not this."""
    names = assigned_name(pred), assigned_name(gold)
    if None in names or names[0].casefold() == names[1].casefold():
        return False
    calls = [_FUNCTION_NAME.fullmatch(name) for name in names]
    if not any(calls) or not all(call or _DEPENDENT_NAME.fullmatch(name) for call, name in zip(calls, names)):
        return False
    return not all(calls) or calls[0].group(1) == calls[1].group(1)


def _right_side(answer: str) -> str:
    """What an equation ``name = value`` assigns (the text after its first ``=``)."""
    return answer.split("=", 1)[1].strip()


# A unit written after a number: a thin space or space, then \mathrm/\text/\mbox{...} of unit
# characters (letters, /, ^, digits, \cdot), at the end of the answer.
_TRAILING_UNIT = re.compile(
    r"^(?P<value>.*?[\d}.)])\s*(?:\\[,;:! ]|\\quad|~|\s)+\\(?:mathrm|text|mbox|operatorname)"
    r"\{(?P<unit>\s*[A-Za-z\u00b5\u03a9\u00b0][A-Za-z\u00b5\u03a9\u00b0/^{}\d\s\-.]*|[^{}]*\\cdot[^{}]*)\}\s*$")


def _set_units_aside(pred: str, gold: str) -> tuple[str, str] | None:
    """The two answers without a trailing unit, when only one side writes one or both write the
    same one (``9.8\\,\\mathrm{m/s^2}`` vs ``9.8``); None when neither has one or they differ."""
    matches = [_TRAILING_UNIT.match(text.strip()) for text in (pred, gold)]
    if not any(matches):
        return None
    units = [re.sub(r"\s+", "", m.group("unit")) if m else None for m in matches]
    if all(units) and units[0] != units[1]:
        return None
    return tuple(m.group("value") if m else text for m, text in zip(matches, (pred, gold)))


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """Verdict from strings and numbers alone, or None when symbolic comparison is needed."""
    pred, gold = pred.strip(), gold.strip()
    if not pred or not gold:
        return False
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return pred == gold
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not p or not g:
        return p == g and clean_answer(pred) == clean_answer(gold)
    if max(nesting(p), nesting(g)) > MAX_NESTING:  # too deep for any parser: strings only
        return p.casefold() == g.casefold()
    names = assigned_name(pred), assigned_name(gold)
    same_target = None in names or names[0].casefold() == names[1].casefold()
    if not same_target:
        return None  # "x = 3" vs "y = 3": leave it to math-verify's equation rules
    if p.casefold() == g.casefold():
        return True
    if re.fullmatch(r"[A-E]", g) and "\\mathrm" not in gold:  # \mathrm{E} is Euler's number
        return _choice_letter(pred, p) == g
    pred_number, gold_number = _predicted_number(p, g), evaluate(g)
    if pred_number is not None and gold_number is not None:
        return _numbers_match(pred_number, gold_number, bool(_PERCENT.search(pred)), bool(_PERCENT.search(gold)))
    return _compare_shapes(p, g)


# ----------------------------------------------------------------------------------------------
# step 3 and the public API


_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)\b")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?")


def _degrees_as_radians(text: str) -> str:
    """``30^\\circ`` as ``(30\\pi/180)`` in an answer with a trigonometric function, whose
    argument sympy reads in radians (elsewhere the grader drops the degree mark)."""
    return _DEGREES.sub(r"(\1\\pi/180)", text) if _TRIG.search(text) else text


def _symbolic_verdict(pred: str, gold: str, deadline: float) -> bool:
    p, g = clean_answer(_degrees_as_radians(pred)), clean_answer(_degrees_as_radians(gold))
    for text in (p, g):
        if not text or len(text) > MAX_SYMBOLIC_CHARS or nesting(text) > MAX_NESTING or has_huge_power(text):
            return False
    return worker.compare(p, g, deadline)


def _judge(pred: str, gold: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    try:
        pred, gold = _comparable(pred, gold)
        verdict = _fast_verdict(pred, gold)
        return verdict if verdict is not None else _symbolic_verdict(pred, gold, deadline)
    except Exception:  # untrusted input must never crash grading
        return False


def _comparable(pred: str, gold: str) -> tuple[str, str]:
    """The parts of two answers to compare: the right-hand sides of one function's equations
    under two names, the values of quantities whose units agree (or only one side gives)."""
    if "=" in pred and "=" in gold and _same_function(pred, gold):
        pred, gold = _right_side(pred), _right_side(gold)
    if "\\m" not in pred + gold and "\\text" not in pred + gold and "\\operatorname" not in pred + gold:
        return pred, gold  # no unit command: the common case, decided without a regex
    return _set_units_aside(pred, gold) or (pred, gold)


def _answers(response: object, gold: object) -> tuple[str, str] | None:
    """(predicted answer, gold answer) for a full response and a gold answer or solution."""
    response_text, gold_text = _as_text(response), _as_text(gold)
    if response_text is None or gold_text is None:
        return None
    pred = extract_answer(response_text)
    return None if pred is None else (pred, final_answer_part(gold_text))


def is_equivalent(pred: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    r"""True if the predicted answer equals the gold answer mathematically.

    Both are answers (``"\frac{1}{2}"``, ``"$x=3$"``); a side that is really a response (an
    answer marker such as ``\boxed{}``/``####``/"the answer is", or a sentence around the
    answer) is reduced to its answer first. The symbolic step gets at most ``timeout``
    seconds (plus a short grace); running out means False.
    """
    pred_text, gold_text = _as_text(pred), _as_text(gold)
    if pred_text is None or gold_text is None:
        return False
    try:
        pred_answer, gold_answer = final_answer_part(pred_text), final_answer_part(gold_text)
    except Exception:
        return False
    return _judge(pred_answer, gold_answer, timeout)


def grade(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True if the final answer extracted from a full model response equals ``gold``."""
    try:
        answers = _answers(response, gold)
    except Exception:
        return False
    return answers is not None and _judge(*answers, timeout)


def _symbolic_or_false(answers: tuple[str, str], timeout: float) -> bool:
    pred, gold = answers
    try:
        return _symbolic_verdict(pred, gold, time.monotonic() + timeout)
    except Exception:
        return False


def grade_many(
    pairs: Iterable[tuple[str, str]], processes: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[bool]:
    """``grade`` over (response, gold) pairs; symbolic steps run in parallel worker processes.

    String and number checks run here (they are cheap); the pairs left for math-verify are
    spread over ``processes`` workers (default: one per CPU), each with its own time limit.
    """
    return _judge_pairs([_safely(_answers, response, gold) for response, gold in pairs],
                        processes, timeout)


def grade_answers(
    pairs: Iterable[tuple[str | None, str]], processes: int | None = None,
    timeout: float = DEFAULT_TIMEOUT
) -> list[bool]:
    """Like :func:`grade_many` for answers that are already extracted (by an evaluation
    protocol's own rule): each prediction is compared as it is, never reduced further; a gold
    answer that is a worked solution is reduced to its answer. ``None`` (no answer) is wrong."""

    def answers(pred: str | None, gold: object) -> tuple[str, str] | None:
        gold_text = _as_text(gold)
        if pred is None or gold_text is None:
            return None
        return pred, final_answer_part(gold_text)

    return _judge_pairs([_safely(answers, pred, gold) for pred, gold in pairs], processes, timeout)


def _safely(function: Callable, *args) -> tuple[str, str] | None:
    try:
        return function(*args)
    except Exception:  # untrusted input must never crash grading
        return None


def _judge_pairs(pairs: list[tuple[str, str] | None], processes: int | None, timeout: float
                 ) -> list[bool]:
    """Verdicts for (prediction, gold) answer pairs (None: wrong): strings and numbers here,
    the rest in parallel symbolic workers, identical pairs judged once."""
    workers = max(1, processes or os.cpu_count() or 1)
    results: list[bool] = []
    pending: dict[tuple[str, str], list[int]] = {}
    for answers in pairs:
        try:
            verdict = False if answers is None else _fast_verdict(*answers)
        except Exception:
            verdict = False
        if verdict is None:
            if not pending:
                worker.prestart(workers)  # they load while the remaining pairs are checked
            pending.setdefault(answers, []).append(len(results))
        results.append(bool(verdict))
    if pending:
        with ThreadPoolExecutor(min(workers, len(pending))) as executor:
            verdicts = executor.map(_symbolic_or_false, pending, [timeout] * len(pending))
            for indices, verdict in zip(pending.values(), verdicts):
                for index in indices:
                    results[index] = verdict
    return results
