"""The toy arithmetic task: multi-step +/- problems solved one step per line.

It is small enough for a 0.5M-parameter model to half-learn in CPU minutes, and it has the shape of
real math reasoning: a prompt, intermediate steps separated by newlines, and a ``\\boxed{}`` final
answer graded against a gold answer. Two knobs make the learned policy imperfect in ways RL can fix:

* ``skip_rate``: the fraction of SFT targets that jump straight to ``\\boxed{...}`` with a guessed
  answer (a policy habit with low accuracy that outcome rewards can discourage);
* ``slip_rate``: the fraction of SFT targets with one arithmetic slip in one step, carried to the
  end (an error a process reward can localise to its step).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One toy problem: ``prompt`` (ends with a newline), a step-by-step ``solution`` and the gold
    ``answer`` (a decimal string)."""

    prompt: str
    solution: str
    answer: str


@dataclass(frozen=True)
class TaskSpec:
    """Difficulty of the toy task."""

    num_operands: int = 3
    max_digits: int = 2
    operators: str = "+-"


def _operands_and_ops(spec: TaskSpec, rng: random.Random) -> tuple[list[int], list[str]]:
    """Draw operands and operators keeping every running value non-negative."""
    high = 10 ** spec.max_digits - 1
    values = [rng.randint(1, high)]
    ops: list[str] = []
    running = values[0]
    for _ in range(spec.num_operands - 1):
        op = rng.choice(spec.operators)
        if op == "-" and running == 0:
            op = "+"
        operand = rng.randint(1, min(high, running)) if op == "-" else rng.randint(1, high)
        running = running - operand if op == "-" else running + operand
        values.append(operand)
        ops.append(op)
    return values, ops


def _apply(left: int, op: str, right: int) -> int:
    return left + right if op == "+" else left - right if op == "-" else left * right


def solve(values: list[int], ops: list[str], slip_at: int | None = None,
          rng: random.Random | None = None) -> tuple[list[str], int]:
    """The step lines ``a+b=c`` and the final value; ``slip_at`` puts an off-by-small error into
    that step's result, and later steps carry it on."""
    lines, running = [], values[0]
    for index, (op, operand) in enumerate(zip(ops, values[1:])):
        result = _apply(running, op, operand)
        if index == slip_at and rng is not None:
            result = max(0, result + rng.choice([-10, -2, -1, 1, 2, 10]))
        lines.append(f"{running}{op}{operand}={result}")
        running = result
    return lines, running


def make_problem(spec: TaskSpec, rng: random.Random) -> Problem:
    values, ops = _operands_and_ops(spec, rng)
    expression = "".join(str(v) + o for v, o in zip(values, ops + [""]))
    lines, answer = solve(values, ops)
    return Problem(prompt=f"Compute {expression}\n",
                   solution="\n".join(lines) + f"\n\\boxed{{{answer}}}", answer=str(answer))


def make_problems(n: int, seed: int, spec: TaskSpec = TaskSpec()) -> list[Problem]:
    """``n`` problems, deterministic under ``seed``."""
    rng = random.Random(seed)
    return [make_problem(spec, rng) for _ in range(n)]


def sft_target(problem: Problem, rng: random.Random, *, skip_rate: float, slip_rate: float) -> str:
    """The completion the warm-up policy imitates for ``problem``: the worked solution, or (with
    the given rates) a skipped-steps guess or a solution with one slipped step."""
    roll = rng.random()
    if roll < skip_rate:
        guess = max(0, int(problem.answer) + rng.randint(-15, 15))
        return f"\\boxed{{{guess}}}"
    if roll < skip_rate + slip_rate:
        expression = problem.prompt[len("Compute "):].strip()
        values, ops = _parse_expression(expression)
        lines, answer = solve(values, ops, slip_at=rng.randrange(len(ops)), rng=rng)
        return "\n".join(lines) + f"\n\\boxed{{{answer}}}"
    return problem.solution


def _parse_expression(expression: str) -> tuple[list[int], list[str]]:
    values, ops, number = [], [], ""
    for char in expression:
        if char.isdigit():
            number += char
        else:
            values.append(int(number))
            ops.append(char)
            number = ""
    values.append(int(number))
    return values, ops
