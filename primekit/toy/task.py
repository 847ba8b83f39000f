"""The toy arithmetic task: multi-step +/- problems solved one step per line.

It is small enough for a 0.5M-parameter model to half-learn in CPU minutes, and it has the shape of
real math reasoning: a prompt, intermediate steps separated by newlines, and a ``\\boxed{}`` final
answer graded against a gold answer.

Difficulty is set by :class:`TaskSpec` (how many operands a problem has, possibly a different number
per problem, and how large they are). The SFT warm-up (:func:`sft_target`) then makes the learned
policy imperfect in ways RL can fix:

* ``skip_rate``: the fraction of SFT targets that jump straight to ``\\boxed{...}`` with a guessed
  answer (a policy habit with low accuracy that outcome rewards can discourage);
* ``slip_rate``: the fraction of SFT targets with one arithmetic slip in one step, carried to the
  end (an error a process reward can localise to its step);
* ``step_slip_rate``: the chance that *each* step of a worked target slips, independently, so a
  long chain slips more often than a short one and a slip can sit at any step of it;
* ``carry_slip_rate``: the chance that a step needing a carry (``+``) or a borrow (``-``) in the
  units digit forgets it (a result off by 10). Unlike a random slip, which the policy learns as a
  rare token, this is a systematic error: the policy hesitates between two likely answers at every
  such step, so a long chain holds several uncertain decisions and an outcome says little about
  which one went wrong;
* ``systematic_slip_rate``: the chance that a step adding ``systematic_operand`` writes a result
  one too high: a *confident* systematic error (the policy learns it as the likely answer);
* ``compensating_slip_rate``: the chance that a target slips by +d at one step and by -d at a
  later one, so its answer is right although two of its steps are wrong (right answer, wrong work);
* :attr:`TaskSpec.space_rate`: the chance that a worked line is written with spaces around its
  operator and ``=`` (``7 + 8 = 15``), a harmless choice the policy makes at random.

A slipped result is carried on by the later steps, so one slip anywhere ruins the final answer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

#: Field metadata of a knob added after the first release: a cache key leaves such a field out
#: while it holds its default, so adding a knob never changes the key of a policy already cached.
ADDED_KNOB = {"key_omits_default": True}

SLIP_OFFSETS = (-10, -2, -1, 1, 2, 10)


@dataclass(frozen=True)
class Problem:
    """One toy problem: ``prompt`` (ends with a newline), a step-by-step ``solution`` and the gold
    ``answer`` (a decimal string)."""

    prompt: str
    solution: str
    answer: str


@dataclass(frozen=True)
class TaskSpec:
    """Difficulty of the toy task.

    A problem has ``num_operands`` operands (``num_operands - 1`` steps); with ``max_operands`` set,
    each problem draws its count uniformly from ``num_operands .. max_operands``, so one data set
    mixes short and long chains. Operands lie in ``1 .. 10**max_digits - 1`` (the operand range).
    ``space_rate``: the share of SFT target lines written with spaces (``7 + 8 = 15``); the gold
    solution has none.
    """

    num_operands: int = 3
    max_digits: int = 2
    operators: str = "+-"
    max_operands: int | None = field(default=None, metadata=ADDED_KNOB)
    space_rate: float = field(default=0.0, metadata=ADDED_KNOB)

    def __post_init__(self) -> None:
        if self.num_operands < 2:
            raise ValueError(f"num_operands must be >= 2 (one step at least); got {self.num_operands}")
        if self.max_operands is not None and self.max_operands < self.num_operands:
            raise ValueError(f"max_operands ({self.max_operands}) is below num_operands ({self.num_operands})")
        if self.max_digits < 1:
            raise ValueError(f"max_digits must be >= 1; got {self.max_digits}")
        if not 0.0 <= self.space_rate <= 1.0:
            raise ValueError(f"space_rate must lie in [0, 1]; got {self.space_rate}")
        if not self.operators or set(self.operators) - set("+-*"):
            raise ValueError(f"operators must be a non-empty string of + - *; got '{self.operators}'")

    @property
    def most_operands(self) -> int:
        return self.max_operands or self.num_operands


def _operands_and_ops(spec: TaskSpec, rng: random.Random) -> tuple[list[int], list[str]]:
    """Draw operands and operators keeping every running value non-negative."""
    high = 10 ** spec.max_digits - 1
    count = spec.num_operands if spec.max_operands is None else rng.randint(spec.num_operands, spec.max_operands)
    values = [rng.randint(1, high)]
    ops: list[str] = []
    running = values[0]
    for _ in range(count - 1):
        op = rng.choice(spec.operators)
        if op == "-" and running == 0:
            op = "+"
        operand = rng.randint(1, min(high, running)) if op == "-" else rng.randint(1, high)
        running = apply_operator(running, op, operand)
        values.append(operand)
        ops.append(op)
    return values, ops


def apply_operator(left: int, op: str, right: int) -> int:
    """``left op right`` for the task's operators (+, -, *)."""
    return left + right if op == "+" else left - right if op == "-" else left * right


def needs_carry(left: int, op: str, right: int) -> bool:
    """Whether ``left op right`` carries (``+``) or borrows (``-``) in the units digit."""
    if op == "+":
        return left % 10 + right % 10 >= 10
    return op == "-" and left % 10 < right % 10


def solve(values: list[int], ops: list[str], slip_at: int | Collection[int] | None = None,
          rng: random.Random | None = None, carry_slip_rate: float = 0.0,
          systematic_slip: tuple[int, float] | None = None,
          offsets: Mapping[int, int] | None = None) -> tuple[list[str], int]:
    """The step lines ``a+b=c`` and the final value; ``slip_at`` (a step index or several) puts an
    off-by-small error into that step's result, ``carry_slip_rate`` makes a step that carries or
    borrows forget it with that chance, ``systematic_slip`` = (operand, rate) makes a step with
    that right operand write a result one too high with that chance, ``offsets`` adds a given
    amount to given steps' results; later steps carry the wrong value on."""
    slips = {slip_at} if isinstance(slip_at, int) else set(slip_at or ())
    lines, running = [], values[0]
    for index, (op, operand) in enumerate(zip(ops, values[1:])):
        result = apply_operator(running, op, operand)
        if carry_slip_rate > 0 and rng is not None and needs_carry(running, op, operand) \
                and rng.random() < carry_slip_rate:
            result += -10 if op == "+" else 10
        if systematic_slip is not None and rng is not None and operand == systematic_slip[0] \
                and rng.random() < systematic_slip[1]:
            result += 1
        if offsets:
            result = max(0, result + offsets.get(index, 0))
        if index in slips and rng is not None:
            result = max(0, result + rng.choice(SLIP_OFFSETS))
        lines.append(f"{running}{op}{operand}={result}")
        running = result
    return lines, running


def make_problem(spec: TaskSpec, rng: random.Random) -> Problem:
    values, ops = _operands_and_ops(spec, rng)
    expression = "".join(str(v) + o for v, o in zip(values, ops + [""]))
    lines, answer = solve(values, ops)
    return Problem(prompt=f"Compute {expression}\n",
                   solution="\n".join(lines) + f"\n\\boxed{{{answer}}}", answer=str(answer))


def make_problems(n: int, seed: int, spec: TaskSpec = TaskSpec(),
                  exclude_prompts: Collection[str] = ()) -> list[Problem]:
    """``n`` problems, deterministic under ``seed``; a drawn problem whose prompt is in
    ``exclude_prompts`` is skipped and another one drawn (so held-out problems can be kept apart
    from training ones). Raises ValueError when the excluded prompts leave too few to draw."""
    rng = random.Random(seed)
    problems: list[Problem] = []
    draws, patience = 0, 100 * n + 1000
    while len(problems) < n:
        problem = make_problem(spec, rng)
        draws += 1
        if problem.prompt not in exclude_prompts:
            problems.append(problem)
        elif draws > patience:
            raise ValueError(f"make_problems: only {len(problems)} of {n} problems in {draws} draws lie outside "
                             "the excluded prompts (the task has too few distinct problems)")
    return problems


def sft_target(problem: Problem, rng: random.Random, *, skip_rate: float, slip_rate: float,
               step_slip_rate: float = 0.0, carry_slip_rate: float = 0.0, systematic_slip_rate: float = 0.0,
               systematic_operand: int = 7, compensating_slip_rate: float = 0.0, space_rate: float = 0.0) -> str:
    """The completion the warm-up policy imitates for ``problem``: the worked solution, or (with
    the given rates) a skipped-steps guess, a solution with one slipped step, or, with
    ``step_slip_rate``, a solution in which each step slipped independently with that chance; with
    ``carry_slip_rate``, ``systematic_slip_rate``, ``compensating_slip_rate`` and ``space_rate``
    any worked target may also forget carries, slip systematically, slip twice with no effect on
    the answer, or be written with spaces (see the module docstring). A rate at 0 draws nothing, so
    the targets of settings without it stay what they were."""
    roll = rng.random()
    if roll < skip_rate:
        guess = max(0, int(problem.answer) + rng.randint(-15, 15))
        return f"\\boxed{{{guess}}}"
    values, ops = parse_expression(problem_expression(problem.prompt))
    slips: int | list[int] = []
    if roll < skip_rate + slip_rate:
        slips = rng.randrange(len(ops))
    elif step_slip_rate > 0:  # no extra draws at 0, so the default targets stay what they were
        slips = [step for step in range(len(ops)) if rng.random() < step_slip_rate]
    added = systematic_slip_rate > 0 or compensating_slip_rate > 0 or space_rate > 0
    if slips == [] and carry_slip_rate == 0 and not added:
        return problem.solution
    offsets: dict[int, int] = {}
    if compensating_slip_rate > 0 and len(ops) >= 2 and rng.random() < compensating_slip_rate:
        first, second = sorted(rng.sample(range(len(ops)), 2))
        size = rng.choice((-2, -1, 1, 2))
        offsets = {first: size, second: -size}
    systematic = (systematic_operand, systematic_slip_rate) if systematic_slip_rate > 0 else None
    lines, answer = solve(values, ops, slip_at=slips, rng=rng, carry_slip_rate=carry_slip_rate,
                          systematic_slip=systematic, offsets=offsets)
    if space_rate > 0:
        lines = [spaced(line) if rng.random() < space_rate else line for line in lines]
    return "\n".join(lines) + f"\n\\boxed{{{answer}}}"


def spaced(line: str) -> str:
    """``"7+8=15"`` written ``"7 + 8 = 15"``."""
    return re.sub(r"(?<=\d)([+*=-])", r" \1 ", line)


def problem_expression(prompt: str) -> str:
    """``"37+58-19"`` from the prompt ``"Compute 37+58-19\\n"``."""
    return prompt.removeprefix("Compute ").strip()


def parse_expression(expression: str) -> tuple[list[int], list[str]]:
    """Operands and operators of ``"37+58-19"``: ``([37, 58, 19], ["+", "-"])``."""
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


def max_sequence_tokens(spec: TaskSpec) -> int:
    """An upper bound on prompt + worked solution + EOS, in toy tokens (one per character, plus
    ``Compute`` and ``\\boxed{`` as one token each), slips included."""
    operands = spec.most_operands
    largest = (10 ** spec.max_digits - 1) * (operands if "*" not in spec.operators else 10 ** operands)
    value = len(str(largest)) + 2  # a slip can add a digit; the bound is loose on purpose
    prompt = 2 + operands * (spec.max_digits + 1) + 1
    step = value + 1 + spec.max_digits + 1 + value + 1 + (4 if spec.space_rate > 0 else 0)
    return prompt + (operands - 1) * step + 1 + value + 1 + 1
