r"""Does a process reward blame the right step? Slip localisation on toy responses.

A toy response is a chain of step lines ``a+b=c`` and a final ``\boxed{v}`` line. A step line is
*wrong* when its arithmetic is wrong, when its left operand is not the value the line before it
reached (the first operand for the first line), or when its operator and right operand are not the
prompt's next ones; the boxed line is wrong when it does not repeat the last value. A response
with the prompt's number of steps and exactly one wrong line (every other line right given what
came before it, so the slipped value was carried on) has *one slip*, at that line.

On responses with one slip, a per-token score (an implicit PRM's r_t, or a baseline's, e.g. the
reference policy's log-likelihood) *localises* the slip when

* step level: the lowest step score (the sum of its tokens' scores) is the slipped line's;
* token level: the lowest token score lies in the slipped line.

Chance levels are reported beside the rates (a uniformly random step; a uniformly random token),
since long responses make localisation harder. Everything here is pure: tokens are mapped to steps
by the caller (:func:`primekit.prm.reading.token_steps` gives that mapping for any tokenizer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from primekit.prm.reading import sum_by_step
from primekit.toy.task import apply_operator, parse_expression, problem_expression

__all__ = ["Localisation", "SlipCase", "localisation", "lowest_index", "single_slip_step", "step_errors"]

_STEP = re.compile(r"^(-?\d+) ?([+*-]) ?(\d+) ?= ?(-?\d+)$")  # spaces around + and = allowed
_BOXED = re.compile(r"^\\boxed\{(-?\d+)\}$")


def step_errors(prompt: str, completion: str) -> list[int] | None:
    """Indices of the wrong lines of ``completion`` (see the module docstring), or None when it is
    not a worked solution of ``prompt``: another number of steps, an unreadable line, no boxed line."""
    values, ops = parse_expression(problem_expression(prompt))
    lines = completion.strip().split("\n")
    if len(lines) != len(ops) + 1:
        return None
    steps = [_STEP.match(line) for line in lines[:-1]]
    boxed = _BOXED.match(lines[-1])
    if boxed is None or any(match is None for match in steps):
        return None
    wrong, carried = [], values[0]
    for index, (match, op, operand) in enumerate(zip(steps, ops, values[1:])):
        left, written_op, right, result = int(match[1]), match[2], int(match[3]), int(match[4])
        if left != carried or written_op != op or right != operand or apply_operator(left, op, right) != result:
            wrong.append(index)
        carried = result
    if int(boxed[1]) != carried:
        wrong.append(len(lines) - 1)
    return wrong


def single_slip_step(prompt: str, completion: str) -> int | None:
    """The line index of the one slip of ``completion``, or None if it has none, several, or is
    not a worked solution."""
    wrong = step_errors(prompt, completion)
    return wrong[0] if wrong is not None and len(wrong) == 1 else None


def lowest_index(values: Sequence[float]) -> int:
    """Position of the smallest value (the first one on a tie); NaN never counts as smallest."""
    if not values:
        raise ValueError("lowest_index of an empty sequence")
    best = None
    for index, value in enumerate(values):
        if not math.isnan(value) and (best is None or value < values[best]):
            best = index
    if best is None:
        raise ValueError("lowest_index: every value is NaN")
    return best


@dataclass(frozen=True)
class SlipCase:
    """One response with one slip: the slipped line, and a score and a step index per token."""

    slip_step: int
    token_scores: Sequence[float]
    token_steps: Sequence[int]

    def __post_init__(self) -> None:
        if len(self.token_scores) != len(self.token_steps) or not self.token_scores:
            raise ValueError(f"SlipCase: {len(self.token_scores)} token scores but {len(self.token_steps)} "
                             "step indices (both must be the same, non-zero length)")
        if not 0 <= self.slip_step <= max(self.token_steps):
            raise ValueError(f"SlipCase: slip step {self.slip_step} outside steps 0..{max(self.token_steps)}")

    @property
    def num_steps(self) -> int:
        return max(self.token_steps) + 1

    def step_scores(self) -> list[float]:
        return sum_by_step(self.token_scores, self.token_steps, self.num_steps)


@dataclass(frozen=True)
class Localisation:
    """How often the lowest step / token score falls on the slip, over ``responses`` cases."""

    responses: int
    step_hits: int
    token_hits: int
    step_chance: float
    token_chance: float

    @property
    def step_rate(self) -> float:
        return self.step_hits / self.responses if self.responses else float("nan")

    @property
    def token_rate(self) -> float:
        return self.token_hits / self.responses if self.responses else float("nan")

    def standard_error(self, rate: float) -> float:
        """Binomial standard error of a rate over these responses."""
        return math.sqrt(max(rate * (1 - rate), 0.0) / self.responses) if self.responses else float("nan")


def localisation(cases: Iterable[SlipCase]) -> Localisation:
    """Step- and token-level localisation rates of ``cases`` with their chance levels: a uniformly
    random step, and a uniformly random token (its chance of lying in the slipped line)."""
    cases = list(cases)
    step_hits = sum(lowest_index(case.step_scores()) == case.slip_step for case in cases)
    token_hits = sum(case.token_steps[lowest_index(case.token_scores)] == case.slip_step for case in cases)
    if not cases:
        return Localisation(0, 0, 0, float("nan"), float("nan"))
    step_chance = sum(1 / case.num_steps for case in cases) / len(cases)
    token_chance = sum(sum(step == case.slip_step for step in case.token_steps) / len(case.token_steps)
                       for case in cases) / len(cases)
    return Localisation(len(cases), step_hits, token_hits, step_chance, token_chance)
