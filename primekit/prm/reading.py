"""Reading an implicit PRM: the one home of every convention that turns log-ratios into scores.

An implicit PRM is a causal LM pi_phi read against a frozen reference pi_ref. Reading it takes
six decisions, each made here and nowhere else:

1. **The reward scale.** ``r_t = coef * q_t`` with ``q_t = log pi_phi(y_t|...) - log pi_ref(y_t|...)``
   (:func:`implicit_rewards`). Training uses ``beta`` (0.05 for PRIME and EurusPRM); reading may
   use another *inference coefficient*: EurusPRM's model card and ImplicitPRM's evaluation read
   with 0.001. Rankings by ``min_step``/``min_q``/``last``/``mean``/``sum_q`` do not depend on the
   coefficient; sigmoid vote weights do.
2. **The steps.** How a response is cut into steps, and the exact text the PRM reads
   (:func:`split_steps`, modes ``newline``, ``double_newline``, ``eurus``, ``auto``). ``eurus``
   rewrites the response the way ImplicitPRM's evaluation does: split on ``Step k:`` anywhere,
   strip each piece, prefix ``Step i: `` and join with a blank line.
3. **The aggregate.** One ranking score from the per-step rewards r_k (:func:`aggregate`):
   ``min_step`` = min_k r_k (the weakest step increment), ``min_q`` = min_k Q_k with
   Q_k = r_1 + ... + r_k (EurusPRM Stage 1's Best-of-N), ``last`` = Q_K (the sequence reward),
   ``mean`` = mean_k r_k, ``sum_q`` = sum_k Q_k.
4. **The prompt.** What the PRM reads before the response (:func:`prm_prompt`): by default the
   problem as a user message through the *PRM tokenizer's* chat template (``prm_context chat``,
   as the card does), or the exact prompt the policy saw (``prm_context prompt``).
5. **The record.** Every trained PRM carries ``implicit_prm.json`` (base, reference, beta,
   inference coefficient, step mode, EOS handling; :func:`write_prm_record`), so a saved PRM loads
   with its path alone; a few published PRMs have their card's reading built in
   (:data:`KNOWN_PRMS`).
6. **The read-out.** ``read_out steps`` (the default for PRMs primekit trains) reads Q_k at the
   end of step k as above; ``read_out card`` reads the conversation exactly as ImplicitPRM's
   evaluation does, both shifts included (:func:`card_boundaries`, :func:`card_values`), and is the
   default for ``PRIME-RL/EurusPRM-Stage1``, so that ``--aggregate min_q`` gives the published
   Best-of-N scores. Their boundary k is found by tokenizing the conversation cut after k steps,
   so it lands one token past the end of step k only where the BPE keeps the step's last token
   apart from the blank line; where it fuses them (a step ending in ``"."``: ``".\n\n"`` is one
   Qwen2 token) the card reads two tokens into the next step.

:class:`primekit.arguments.PRMReadingArguments` holds the options every command shares (``prm``,
``prm_ref``, ``aggregate``, ``step_mode``, ``coef``, ``prm_context``, ``read_out``) and checks
their names; :func:`primekit.prm.settings.resolve_reading` combines them with the record into the
settings a reader uses.

Against EurusPRM's model card and ImplicitPRM's evaluation (``eval/prm_eval_utils.py:184-226``
builds the inputs, ``:405-460`` reads them): the text, the prompt, the coefficient and the
aggregate are theirs with ``--prm PRIME-RL/EurusPRM-Stage1 --aggregate min_q``. Where they read
Q_k differs from ``read_out steps`` by two tokens, both added on their side. Their first boundary
is the last prompt token (the newline after "assistant"), so its log-ratio joins every Q_k: a
shift shared by all candidates of a problem, which changes no ranking among them. And at every
step but the last they read one token late (``len(ids) - 2`` after appending a blank line), so
their Q_k also holds the first token of step k+1, the "Step" of its marker. primekit reads Q_k at
the end of step k, blank line included; ``tests/test_prm_reading.py`` checks this decomposition
token by token (with a word-level tokenizer; on Qwen2's BPE see item 6).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from primekit.arguments import canonical_aggregate, check_coef, check_prm_context, check_read_out, check_step_mode
from primekit.errors import InputError
from primekit.io import atomic_write_json

__all__ = [
    "KNOWN_PRMS",
    "RECORD_FILE",
    "PRMRecord",
    "Prompt",
    "Query",
    "Steps",
    "aggregate",
    "card_boundaries",
    "card_values",
    "implicit_rewards",
    "join_steps",
    "prm_prompt",
    "q_values",
    "read_prm_record",
    "render_prompt",
    "split_steps",
    "sum_by_step",
    "threshold_series",
    "token_steps",
    "write_prm_record",
]

RECORD_FILE = "implicit_prm.json"
DEFAULT_BETA = 0.05

Prompt = str | list[dict[str, str]]  # verbatim text, or chat messages for the PRM's chat template


# ---------------------------------------------------------------------------------------------
# 1. r = coef * q


def implicit_rewards(logratios, coef: float):
    """r = coef * q: implicit rewards from log-ratios q = log pi_phi - log pi_ref (a float, a
    tensor of token log-ratios or of their sums). ``coef`` is beta when training and the
    inference coefficient when reading."""
    return coef * logratios


# ---------------------------------------------------------------------------------------------
# 2. steps


@dataclass(frozen=True)
class Steps:
    """The text a PRM reads for one response and the character spans ``[start, end)`` of its
    steps. The spans cover ``text`` exactly, in order; a separator belongs to the step it closes."""

    text: str
    spans: tuple[tuple[int, int], ...]

    @property
    def texts(self) -> list[str]:
        return [self.text[start:end] for start, end in self.spans]

    def __len__(self) -> int:
        return len(self.spans)


def separator_spans(text: str, separator: str) -> list[tuple[int, int]]:
    """Spans that end right after each ``separator``. A span holding only whitespace (a blank
    line, text after a trailing separator) is no step of its own and joins its neighbour, so
    ``"a\\n\\nb"`` has two newline steps, not three. Text without a separator is one step."""
    if not separator:
        raise ValueError("separator_spans: the separator must be a non-empty string")
    bounds = [0]
    found = text.find(separator)
    while found != -1:
        bounds.append(found + len(separator))
        found = text.find(separator, found + len(separator))
    bounds.append(len(text))
    spans: list[tuple[int, int]] = []
    for start, end in zip(bounds, bounds[1:]):
        if end == start:
            continue
        if spans and not text[start:end].strip():
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    if len(spans) > 1 and not text[spans[0][0]:spans[0][1]].strip():
        spans[:2] = [(spans[0][0], spans[1][1])]  # leading blank lines belong to the first step
    return spans or [(0, len(text))]


# "Step 3:" at the start of a line, possibly inside Markdown emphasis or a heading ("**Step 3:**").
_LINE_START_MARKER = re.compile(r"^[ \t#*_]*Step[ \t]*\d+[ \t]*:", re.MULTILINE)
# ImplicitPRM's evaluation splits on this pattern anywhere in the text (eval/prm_eval_utils.py:311).
_EURUS_MARKER = re.compile(r"Step \d+:")
EURUS_SEPARATOR = "\n\n"


def _marker_spans(text: str) -> list[tuple[int, int]]:
    """Steps that start at line-start "Step k:" markers (at least two of them); a preamble before
    the first marker belongs to the first step."""
    starts = [match.start() for match in _LINE_START_MARKER.finditer(text)]
    if len(starts) < 2:
        return []
    bounds = [0, *starts[1:], len(text)]
    return list(zip(bounds, bounds[1:]))


def eurus_step_texts(response: str) -> list[str]:
    """ImplicitPRM's step texts before numbering (``eval/prm_eval_utils.py:311-312``): split on
    ``Step \\d+:`` anywhere, strip each piece, drop empty ones, and write any other "Step" inside
    a step in lower case so the numbering stays unambiguous. Text without markers is one step."""
    pieces = [piece.strip() for piece in _EURUS_MARKER.split(response)]
    return [piece.replace("Step", "step") for piece in pieces if piece]


def join_steps(steps: Sequence[str], numbered: bool = True, separator: str = EURUS_SEPARATOR) -> Steps:
    """Known steps joined into the text a PRM reads: ``Step i: `` before each (``numbered``), a
    blank line between them, as ImplicitPRM's evaluation and ProcessBench script build it
    (``eval/prm_eval_utils.py:313``, ``eval/processbench.py:219`` and ``:138``). The steps are not
    re-split, so a blank line inside a step stays inside it."""
    if not steps:
        raise InputError("a solution needs at least one step")
    pieces = [f"Step {index + 1}: {step}" if numbered else step for index, step in enumerate(steps)]
    spans, start = [], 0
    for index, piece in enumerate(pieces):
        end = start + len(piece) + (len(separator) if index < len(pieces) - 1 else 0)
        spans.append((start, end))
        start = end
    return Steps(separator.join(pieces), tuple(spans))


def split_steps(response: str, mode: str = "auto") -> Steps:
    """The text a PRM reads for ``response`` and its steps.

    ``newline`` / ``double_newline`` cut after each ``\\n`` / ``\\n\\n`` and read the response as
    it is. ``eurus`` reads ImplicitPRM's rewritten text (:func:`eurus_step_texts` then
    :func:`join_steps`). ``auto`` keeps the text and cuts before line-start ``Step k:`` markers
    when there are at least two, else on blank lines when that gives two steps or more, else on
    newlines. A response with no text has nothing to read and is an :class:`InputError`.
    """
    check_step_mode(mode)
    if not response.strip():
        raise InputError("a response with no text has no steps to read")
    if mode == "eurus":
        return join_steps(eurus_step_texts(response))
    if mode == "newline":
        return Steps(response, tuple(separator_spans(response, "\n")))
    if mode == "double_newline":
        return Steps(response, tuple(separator_spans(response, "\n\n")))
    spans = _marker_spans(response)
    if not spans:
        spans = separator_spans(response, "\n\n")
        if len(spans) < 2:
            spans = separator_spans(response, "\n")
    return Steps(response, tuple(spans))


def token_steps(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """The step index of each token, from its character span ``(start, end)`` in the text.

    A token belongs to the step holding its last character, so a BPE token that fuses the end of a
    step with the separator (``".\\n\\n"``) counts for the step it closes. A zero-width token (a
    special token such as an appended EOS) joins the step of the token before it.
    """
    ends = [end for _, end in spans]
    steps, current = [], 0
    for start, end in offsets:
        if end > start:
            current = min(bisect.bisect_left(ends, end), len(spans) - 1)
        steps.append(current)
    return steps


def sum_by_step(token_values: Sequence[float], steps: Sequence[int], num_steps: int) -> list[float]:
    """Per-step sums of per-token values (a step's reward is the sum of its tokens' rewards)."""
    if len(token_values) != len(steps):
        raise ValueError(f"sum_by_step: {len(token_values)} values but {len(steps)} step indices")
    sums = [0.0] * num_steps
    for value, step in zip(token_values, steps):
        sums[step] += float(value)
    return sums


# ---------------------------------------------------------------------------------------------
# 3. aggregates


def q_values(step_rewards: Sequence[float]) -> list[float]:
    """Q_k = r_1 + ... + r_k: the implicit Q value after each step (EurusPRM's step read-out)."""
    return list(_running_sum(step_rewards))


def _running_sum(values: Sequence[float]):
    total = 0.0
    for value in values:
        total += float(value)
        yield total


def aggregate(step_values: Sequence[float], how: str, *, cumulative: bool = True) -> float:
    """One ranking score from a response's per-step values.

    ``cumulative`` (implicit PRMs): the values are step rewards r_k and Q_k is their running sum.
    ``min_step`` = min r_k, ``min_q`` = min Q_k, ``last`` = Q_K, ``mean`` = mean r_k,
    ``sum_q`` = sum Q_k. Otherwise (a discriminative PRM's step probabilities, an ORM's one
    score) every value already is the score after its step, so Q_k is the value itself:
    ``min_step`` = ``min_q`` = min, ``last`` = the final value, ``sum_q`` = the sum.
    """
    how = canonical_aggregate(how)
    if not step_values:
        raise ValueError("aggregate: a response has at least one step")
    values = [float(v) for v in step_values]
    qs = q_values(values) if cumulative else values
    if how == "min_step":
        return min(values)
    if how == "min_q":
        return min(qs)
    if how == "last":
        return qs[-1]
    if how == "mean":
        return math.fsum(values) / len(values)
    return math.fsum(qs)  # sum_q


THRESHOLD_AGGREGATES = ("min_step", "min_q")


def threshold_series(step_rewards: Sequence[float], how: str) -> list[float]:
    """The per-step values a first-error threshold is compared with: the step rewards
    (``min_step``) or the running Q values (``min_q``, ImplicitPRM's ProcessBench read-out). A
    solution is flagged at the first step whose value is below the threshold, i.e. exactly when
    its ``min_step`` / ``min_q`` aggregate is."""
    how = canonical_aggregate(how)
    if how not in THRESHOLD_AGGREGATES:
        raise InputError(f"a first-error threshold compares per-step values: aggregate must be "
                         f"{' or '.join(THRESHOLD_AGGREGATES)}, not '{how}'", field="aggregate")
    return q_values(step_rewards) if how == "min_q" else [float(r) for r in step_rewards]


# ---------------------------------------------------------------------------------------------
# 4. the prompt


@dataclass(frozen=True)
class Query:
    """What is known about the input of one response: the problem as a user asked it, and the
    exact text the policy was prompted with (its chat template and system prompt), when known."""

    problem: str
    prompt: str | None = None


def prm_prompt(query: Query, prm_context: str = "chat") -> Prompt:
    """What a PRM reads before a response: the problem as a user message, rendered later through
    the PRM's own chat template (``chat``, EurusPRM's card), or the policy's prompt text verbatim
    (``prompt``; a PRM trained online on the policy's samples has seen exactly that)."""
    check_prm_context(prm_context)
    if prm_context == "chat":
        return [{"role": "user", "content": query.problem}]
    if query.prompt is None:
        raise InputError("prm_context 'prompt' needs the policy's prompt ('prompt' field) and this "
                         "problem has none; use prm_context chat", field="prompt")
    return query.prompt


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The prompt as the model reads it: text as is; chat messages through the tokenizer's chat
    template with the generation prompt (the assistant turn opened, the response follows)."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(f"{type(tokenizer).__name__} has no chat template to render chat messages "
                         "with; give the prompt as text (or use prm_context prompt)")
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


# ---------------------------------------------------------------------------------------------
# 6. the read-out as ImplicitPRM's evaluation makes it

# Llama 3 markers that ImplicitPRM's evaluation removes from a cut conversation
# (eval/prm_eval_utils.py:205-208); a ChatML conversation keeps its <|im_end|>.
_CARD_CUT_SUFFIXES = ("<|start_header_id|>assistant<|end_header_id|>", "<|eot_id|>")


def card_step_texts(steps: Steps) -> list[str]:
    """The step texts the card's read-out joins with blank lines: ``steps`` must be that join (the
    ``eurus`` rewrite, ProcessBench's numbered steps), else an :class:`InputError`."""
    pieces = [text.removesuffix(EURUS_SEPARATOR) if index < len(steps) - 1 else text
              for index, text in enumerate(steps.texts)]
    if EURUS_SEPARATOR.join(pieces) != steps.text:
        raise InputError("read_out card reads steps joined by blank lines (step_mode eurus, or "
                         "ProcessBench's labelled steps)", field="read_out")
    return pieces


def card_conversation(tokenizer, messages: list[dict[str, str]], steps: Sequence[str]) -> str:
    """The conversation the card reads: the prompt messages and the steps, joined by blank lines,
    as the assistant's turn, through the PRM's chat template (eval/prm_eval_utils.py:190-193)."""
    return tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": EURUS_SEPARATOR.join(steps)}],
        tokenize=False, add_generation_prompt=False)


def card_boundaries(tokenizer, messages: list[dict[str, str]], steps: Sequence[str]) -> list[int]:
    """ImplicitPRM's boundaries e_0 .. e_K (eval/prm_eval_utils.py:196-219): for k = 0 .. K, the
    conversation with the first k steps, stripped (Llama 3's end markers removed before the last
    step), a blank line appended after steps 1 .. K-1, tokenized; e_k is its length minus two."""
    boundaries = []
    for count in range(len(steps) + 1):
        text = card_conversation(tokenizer, messages, steps[:count]).strip()
        for suffix in _CARD_CUT_SUFFIXES:
            if count != len(steps) and text.endswith(suffix):
                text = text[:-len(suffix)]
        if 0 < count < len(steps):
            text += EURUS_SEPARATOR
        boundaries.append(len(tokenizer.encode(text, add_special_tokens=False)) - 2)
    return boundaries


def card_values(token_terms: Sequence[float], boundaries: Sequence[int]) -> list[float]:
    """The card's Q_k for k = 1 .. K from the per-token terms of the whole conversation
    (``token_terms[j]`` = coef * q of token j): the running sum of the terms of tokens e_0 ..
    e_k + 1 (their mask starts at token e_0, and their log-prob at index j belongs to token j + 1;
    eval/prm_eval_utils.py:220 and :409-445)."""
    first = boundaries[0]
    if first < 1 or boundaries[-1] + 1 >= len(token_terms):
        raise ValueError(f"card_values: boundaries {list(boundaries)} outside {len(token_terms)} tokens")
    return [math.fsum(float(value) for value in token_terms[first:end + 2]) for end in boundaries[1:]]


# ---------------------------------------------------------------------------------------------
# 5. the record


@dataclass(frozen=True)
class PRMRecord:
    """How to read a PRM, written next to it by the trainers (``implicit_prm.json``).

    ``base``: the model it was initialised from; ``reference``: pi_ref (None for a LoRA adapter,
    whose base is the reference); ``beta``: the training scale; ``coef``: the inference
    coefficient (default: beta); ``step_mode``: how its responses are cut into steps;
    ``append_eos``: whether responses end with the EOS token, as in training; ``read_out``:
    ``steps`` (primekit's step-aligned Q_k) or ``card`` (ImplicitPRM's evaluation).
    """

    base: str | None
    reference: str | None
    beta: float
    coef: float
    step_mode: str = "auto"
    append_eos: bool = True
    read_out: str = "steps"


# Published PRMs read as their model cards read them. EurusPRM-Stage1: reference and
# coefficient from the card's example and ImplicitPRM's evaluation (eval/prm_eval_utils.py:433,
# eval/processbench.py:78), steps as ImplicitPRM's BoN evaluation writes them
# (eval/prm_eval_utils.py:311-313), beta from the training script (train/tasks/run_ce.sh:6),
# Q_k read as that evaluation reads it (eval/prm_eval_utils.py:184-226, :405-460).
KNOWN_PRMS: dict[str, PRMRecord] = {
    "PRIME-RL/EurusPRM-Stage1": PRMRecord(
        base="Qwen/Qwen2.5-Math-7B-Instruct", reference="Qwen/Qwen2.5-Math-7B-Instruct",
        beta=0.05, coef=0.001, step_mode="eurus", append_eos=True, read_out="card"),
}


def write_prm_record(directory: str | os.PathLike, *, base: str | None, reference: str | None,
                     beta: float, coef: float | None = None, step_mode: str = "auto",
                     append_eos: bool = True) -> Path:
    """Write ``implicit_prm.json`` next to a saved PRM (atomically), so that
    ``ImplicitPRM.from_pretrained(directory)`` finds its reference and reading settings alone."""

    record = PRMRecord(base=base, reference=reference, beta=check_coef(beta, "beta"),
                       coef=check_coef(beta if coef is None else coef), step_mode=check_step_mode(step_mode),
                       append_eos=bool(append_eos))
    path = Path(directory) / RECORD_FILE
    atomic_write_json(path, asdict(record))
    return path


def read_prm_record(name_or_path: str | os.PathLike) -> PRMRecord | None:
    """The record of a local PRM folder, else the built-in reading of a known published PRM,
    else None. A malformed record is an :class:`InputError` naming the file and field."""
    path = Path(name_or_path) / RECORD_FILE
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"malformed JSON ({err.msg})", path=path, line=err.lineno) from None
        if not isinstance(raw, dict):
            raise InputError("expected a JSON object", path=path)
        beta = raw.get("beta", DEFAULT_BETA)
        try:
            return PRMRecord(base=raw.get("base"), reference=raw.get("reference"),
                             beta=check_coef(beta, "beta"), coef=check_coef(raw.get("coef", beta)),
                             step_mode=check_step_mode(raw.get("step_mode", "auto")),
                             append_eos=bool(raw.get("append_eos", True)),
                             read_out=check_read_out(raw.get("read_out", "steps")))
        except InputError as err:
            raise InputError(err.reason, path=path, field=err.field) from None
    return KNOWN_PRMS.get(str(name_or_path))
