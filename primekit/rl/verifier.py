"""The outcome reward of PRIME: 1 when a response's final answer matches the gold answer, else 0.

It is a TRL reward function: ``GRPOTrainer`` calls it with the sampled ``completions`` and every
extra dataset column as a keyword list, so the gold answers arrive as ``answer=[...]`` (one per
completion, already repeated for the n samples of a prompt). Grading is
:func:`primekit.eval.grader.grade`, which never evaluates model output and bounds its symbolic
work in time, so a hostile response costs at most a time-out and scores 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ANSWER_COLUMN", "completion_text", "outcome_accuracy"]

#: Dataset column holding the gold answer; TRL passes it to the reward function by this name.
ANSWER_COLUMN = "answer"


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The response text of a TRL completion: a string, or (conversational data) a list of messages
    whose last one is the assistant's reply."""
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    content = completion[-1].get("content", "")
    if isinstance(content, list):  # content blocks: keep the text ones
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


def outcome_accuracy(completions: Sequence[str | Sequence[dict[str, Any]]], answer: Sequence[Any],
                     **_: Any) -> list[float]:
    """1.0 for each completion whose final answer is equivalent to its gold ``answer``, else 0.0.

    The name is what TRL logs (``rewards/outcome_accuracy/mean`` is the batch accuracy). Other
    keyword arguments (prompts, completion ids, trainer state, other columns) are ignored.
    """
    from primekit.eval.grader import grade  # the grader pulls in sympy; load it on first use

    if len(answer) != len(completions):
        raise ValueError(f"outcome_accuracy: {len(completions)} completions but {len(answer)} gold answers")
    return [1.0 if grade(completion_text(c), str(gold)) else 0.0 for c, gold in zip(completions, answer)]
