"""Training prompts for PRIME: a ``datasets.Dataset`` with ``prompt``, ``answer`` and ``task`` columns.

TRL's ``GRPOTrainer`` samples from the ``prompt`` column (a string, or a list of chat messages that
it renders with the tokenizer's chat template) and hands every other column to the reward
function, which is how the verifier gets the gold ``answer`` and the row's ``task``: ``math``
(graded against the gold answer) or ``code`` (the answer holds the test cases; the program runs
in the sandbox). The task comes from the record's task field (``task_field``; by default
Eurus-2-RL-Data's ``ability``, or ``task``); rows without one are math. Counts per task are logged
at load time, and when code rows are present the sandbox is checked before anything else starts.
Sources:

- ``"toy"``: the embedded arithmetic world (:func:`primekit.toy.train_problems`);
- a local ``.jsonl`` / ``.json`` file (e.g. a benchmark file from the shared data), with the
  problem and answer read from configurable fields, so a missing field is reported as
  ``file:line: field 'x': missing``;
- anything else is a dataset name for ``datasets.load_dataset`` (e.g. ``PRIME-RL/Eurus-2-RL-Data``),
  whose nested answer fields are reached with a dotted name (``reward_model.ground_truth``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, load_dataset

from primekit import toy
from primekit.errors import InputError
from primekit.io import iter_jsonl, read_json_or_jsonl
from primekit.rl.verifier import normalize_task
from primekit.verifiers.code import check_sandbox

__all__ = ["PromptFormat", "prompt_length", "toy_dataset", "load_prompt_dataset", "DEFAULT_TASK_FIELDS",
           "OfficialEpoch"]

#: Record fields that name a row's task, tried in order when ``task_field`` is "auto".
DEFAULT_TASK_FIELDS = ("ability", "task")
logger = logging.getLogger(__name__)

Prompt = str | list[dict[str, str]]


@dataclass(frozen=True)
class PromptFormat:
    """How a raw problem becomes the ``prompt`` the policy sees.

    ``template`` is a ``str.format`` pattern with a ``{problem}`` slot; with ``chat`` the result is
    wrapped as a user message (after an optional system message) so that TRL applies the
    tokenizer's chat template. A prompt that already is a list of messages is left as it is.
    """

    template: str = "{problem}"
    chat: bool = False
    system_prompt: str | None = None

    def render(self, problem: Prompt) -> Prompt:
        if isinstance(problem, list):
            return problem
        text = self.template.format(problem=problem)
        if not self.chat:
            return text
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": text}]


def prompt_length(prompt: Prompt, tokenizer: Any) -> int:
    """Tokens of ``prompt`` as TRL's GRPOTrainer tokenizes it: a string with the tokenizer's special
    tokens, a list of messages through the chat template with the generation prompt."""
    if isinstance(prompt, str):
        return len(tokenizer(prompt)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)


def toy_dataset(problems: list[Any], prompt_format: PromptFormat = PromptFormat()) -> Dataset:
    """Dataset of toy problems (``toy.Problem`` objects with ``prompt`` and ``answer``)."""
    return Dataset.from_dict({"prompt": [prompt_format.render(p.prompt) for p in problems],
                              "answer": [p.answer for p in problems]})


def _nested(record: dict[str, Any], dotted: str, *, path: str, line: int | None) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            raise InputError("missing", path=path, line=line, field=dotted)
        value = value[part]
    return value


def _gold(value: Any, *, path: str, line: int | None, field: str) -> str:
    """A gold answer as text; a list (e.g. OlympiadBench's ``final_answer``) gives its first entry."""
    if isinstance(value, list):
        if not value:
            raise InputError("empty list of answers", path=path, line=line, field=field)
        value = value[0]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"expected a string or number, got {type(value).__name__}", path=path, line=line,
                     field=field)


def _task(record: dict[str, Any], task_field: str | None, *, path: str, line: int | None) -> str:
    """``math`` or ``code`` for a record (math when it names no task)."""
    if task_field is None:
        return "math"
    fields = DEFAULT_TASK_FIELDS if task_field == "auto" else (task_field,)
    for name in fields:
        if name in record and record[name] is not None:
            task = normalize_task(record[name])
            if task is None:
                raise InputError(f"unknown task {record[name]!r} (expected math or code)", path=path, line=line,
                                 field=name)
            return task
    if task_field != "auto":
        raise InputError("missing", path=path, line=line, field=task_field)
    return "math"


def _test_cases(value: Any, *, path: str, line: int | None, field: str) -> str:
    """A code row's test cases as the JSON text the code verifier reads (checked when scored)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value)
    raise InputError(f"expected test cases as a JSON string or object, got {type(value).__name__}", path=path,
                     line=line, field=field)


def _problem(value: Any, *, path: str, line: int | None, field: str) -> Prompt:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return value
    raise InputError("expected a non-empty string or a list of chat messages", path=path, line=line,
                     field=field)


def _records(source: str, split: str) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """``(line, record)`` pairs of ``source``, read as they are consumed, so that a ``limit`` stops
    reading (a JSONL file or a dataset's rows) once enough problems are found."""
    path = Path(source)
    if path.suffix == ".jsonl":
        return iter_jsonl(path)
    if path.suffix == ".json":
        return ((None, record) for record in read_json_or_jsonl(path))
    if path.exists():
        raise InputError("expected a .jsonl or .json file of problems", path=source)
    try:
        hub = load_dataset(source, split=split)
    except Exception as err:  # datasets raises many types for a missing / offline dataset
        raise InputError(f"cannot load dataset ({str(err).splitlines()[0][:200]})", path=source) from None
    return ((None, dict(row)) for row in hub)


def load_prompt_dataset(source: str, *, prompt_field: str = "prompt", answer_field: str = "answer",
                        prompt_format: PromptFormat = PromptFormat(), split: str = "train",
                        limit: int | None = None, task_field: str | None = "auto") -> Dataset:
    """The ``prompt`` / ``answer`` / ``task`` dataset from ``source`` (see the module docstring).

    ``task_field``: the record field naming each row's task ("auto": ``ability``, then ``task``,
    else math; None: every row is math).
    """
    if source == "toy":
        problems = toy.train_problems()
        return toy_dataset(problems[:limit] if limit else problems, prompt_format)
    prompts: list[Prompt] = []
    answers: list[str] = []
    tasks: list[str] = []
    for line, record in _records(source, split):
        task = _task(record, task_field, path=source, line=line)
        prompts.append(prompt_format.render(
            _problem(_nested(record, prompt_field, path=source, line=line), path=source, line=line,
                     field=prompt_field)))
        value = _nested(record, answer_field, path=source, line=line)
        answers.append(_test_cases(value, path=source, line=line, field=answer_field) if task == "code"
                       else _gold(value, path=source, line=line, field=answer_field))
        tasks.append(task)
        if limit is not None and len(prompts) >= limit:
            break
    if not prompts:
        raise InputError("no problems found", path=source)
    counts = Counter(tasks)
    logger.warning("%s: %d prompts (%s)", source, len(prompts),
                   ", ".join(f"{task} {counts[task]}" for task in ("math", "code") if counts[task]))
    if counts["code"]:
        check_sandbox()  # a machine that cannot run code rows safely says so now, in one line
    return Dataset.from_dict({"prompt": prompts, "answer": answers, "task": tasks})


class OfficialEpoch:
    """The official run's order of prompts over an epoch, as dataset indices.

    The official trainer reads one shuffled pass over the prompts in batches
    (``DataLoader(shuffle=True, drop_last=True)``, ray_trainer.py:266-270). Each RL step starts
    with up to one batch of prompts buffered by the previous step (a multiple of the data-parallel
    size, rl_dataset.py:180-184) joined to the loader's next batch, then takes further batches
    until enough prompts pass the filter (ray_trainer.py:459-520); prompts that passed beyond the
    trained number are buffered for the next step (ray_trainer.py:523-524, 693-703) and sampled
    again there; the epoch ends when the loader runs out (ray_trainer.py:467-471, 521-522).

    ``batch_prompts`` is the loader's batch (prompts per sampling round), ``multiple`` the
    data-parallel size a buffered share is rounded down to. State is plain integers, so it
    travels in a checkpoint (:meth:`state_dict`).
    """

    def __init__(self, num_prompts: int, batch_prompts: int, multiple: int = 1, seed: int = 0, shuffle: bool = True):
        if batch_prompts < 1 or num_prompts < batch_prompts:
            raise ValueError(f"an epoch of {num_prompts} prompts has no batch of {batch_prompts}")
        self.num_prompts, self.batch_prompts, self.multiple = num_prompts, batch_prompts, multiple
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.cursor = -1, 0
        self.buffer: list[int] = []
        self._order: list[int] = []

    @property
    def batches_per_epoch(self) -> int:
        """Loader batches in one pass (the last, incomplete one dropped)."""
        return self.num_prompts // self.batch_prompts

    @property
    def batches_left(self) -> int:
        return self.batches_per_epoch - self.cursor

    def start_epoch(self, epoch: int) -> None:
        """A new pass, shuffled by (seed, epoch); the buffer carries over, as officially."""
        import torch  # heavy: the data module loads prompts without it

        self.epoch, self.cursor = epoch, 0
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.num_prompts, generator=generator).tolist()
        else:
            self._order = list(range(self.num_prompts))

    def next_round(self, first: bool) -> list[int] | None:
        """Prompts of the next sampling round (buffered ones first when ``first``); None when the
        loader has run out."""
        if self.epoch < 0:
            raise RuntimeError("start_epoch first")
        if self.cursor >= self.batches_per_epoch:
            return None
        begin = self.cursor * self.batch_prompts
        self.cursor += 1
        batch = self._order[begin:begin + self.batch_prompts]
        if not first:
            return batch
        take = min(len(self.buffer), self.batch_prompts)
        take -= take % self.multiple
        buffered, self.buffer = self.buffer[:take], self.buffer[take:]
        return buffered + batch

    def keep_for_next_step(self, prompts: list[int]) -> None:
        """Buffer surplus passing prompts; they are sampled again at the next step."""
        self.buffer.extend(int(p) for p in prompts)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "buffer": list(self.buffer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.start_epoch(int(state["epoch"]))
        self.cursor, self.buffer = int(state["cursor"]), [int(p) for p in state["buffer"]]
