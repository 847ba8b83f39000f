"""``prime-rl diagnose``: where RLOO's and PRIME's updates land on responses with known errors.

A batch of responses with labelled erroneous steps comes from the toy (the policy's own samples,
each line checked by :mod:`primekit.prm.localisation`), from ProcessBench (human-labelled first
errors, ``final_answer_correct`` as the outcome) or from any JSON/JSONL file with step labels.
The policy being updated gives each token's probability p_t and sum_v pi_v^2; a PRM (optional)
gives q_t. Then :mod:`primekit.rl.credit` reads out, per scheme (RLOO, PRIME with the PRM, PRIME
with a perfect PRM), where the negative update lands, and, for a policy small enough
(``max_gradient_parameters``), the cosine of its parameter gradient with the perfect PRM's and its
gradient signal-to-noise ratio over bootstrap mini-batches of groups.

Groups: the toy samples ``group_size`` responses per problem. A file's rows are grouped by their
``group_field`` when they have one; otherwise (ProcessBench: one response per problem) rows are
dealt into *pseudo-groups* of ``group_size`` that alternate wrong and right outcomes, so RLOO's
baseline is the mean outcome of other problems' responses -- a batch baseline, said in the report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from primekit.arguments import LoadArguments, ModelArguments, PRMReadingArguments
from primekit.config import help_text
from primekit.errors import InputError
from primekit.io import atomic_write_json, read_json_or_jsonl, require_field
from primekit.paths import data_dir
from primekit.prm.reading import Query, join_steps, prm_prompt, split_steps, token_steps
from primekit.prm.settings import resolve_reading
from primekit.toy.task import max_sequence_tokens
from primekit.verifiers.math import grade_many

__all__ = ["ARGUMENT_GROUPS", "DEFAULTS", "CreditBatch", "DiagnoseArguments", "LabelledResponse",
           "diagnose_batch", "encode_batch", "read_labelled_file", "render", "run", "toy_responses"]


@dataclass
class DiagnoseArguments:
    """Options of ``prime-rl diagnose`` besides the policy being updated (``--model``: its p_t;
    default the toy world's policy, else the PRM's reference), the implicit PRM for the PRIME
    scheme and its reading (``--prm``; without it only RLOO and the perfect PRM are compared; its
    ``--prm_context`` is also what the policy reads) and how models are loaded."""

    data: str = field(default="toy", metadata=help_text(
        "responses with known erroneous steps: 'toy' or 'toy:WORLD' (the world's SFT policy samples "
        "held-out problems; slips found line by line), 'processbench:SPLIT' (human-labelled first "
        "errors), or a .json/.jsonl file (fields below)"))
    problems: int = field(default=128, metadata=help_text("toy: held-out problems sampled"))
    group_size: int = field(default=4, metadata=help_text("responses per group (RLOO's n)"))
    temperature: float = field(default=1.0, metadata=help_text("toy: sampling temperature"))
    seed: int = field(default=0, metadata=help_text("sampling and bootstrap seed"))
    max_rows: int = field(default=200, metadata=help_text(
        "files: rows read, half with an erroneous step and half without (in file order)"))
    prompt_field: str = field(default="problem", metadata=help_text("files: the problem (or prompt) text"))
    steps_field: str = field(default="steps", metadata=help_text("files: the list of step strings"))
    error_field: str = field(default="label", metadata=help_text(
        "files: index of the first erroneous step, -1 when none (ProcessBench's 'label')"))
    outcome_field: str = field(default="final_answer_correct", metadata=help_text(
        "files: whether the final answer is right (bool or 0/1)"))
    group_field: str = field(default="group", metadata=help_text(
        "files: rows sharing this value are one group (absent: pseudo-groups, see the docs)"))
    filter_accuracy: bool = field(default=True, metadata=help_text(
        "train only on groups whose accuracy lies in [accuracy_lower, accuracy_upper] (the recipe's)"))
    accuracy_lower: float = field(default=0.2, metadata=help_text("accuracy band, lower edge"))
    accuracy_upper: float = field(default=0.8, metadata=help_text("accuracy band, upper edge"))
    process_reward_coef: float = field(default=5.0, metadata=help_text("PRIME's process coefficient (official 5)"))
    outcome_reward_coef: float = field(default=5.0, metadata=help_text("PRIME's outcome coefficient (official 5)"))
    perfect_penalty: float = field(default=3.0, metadata=help_text(
        "the perfect PRM's q summed over the labelled step (batch_norm makes its size irrelevant)"))
    uncertain_below: float = field(default=0.9, metadata=help_text(
        "a right token is 'uncertain' when the policy gave it a probability below this"))
    max_gradient_parameters: int = field(default=20_000_000, metadata=help_text(
        "compute parameter gradients (cosine, signal-to-noise) only for a policy with at most this "
        "many parameters (0: never)"))
    snr_mini_batch: int = field(default=8, metadata=help_text("groups per bootstrap mini-batch"))
    snr_resamples: int = field(default=2000, metadata=help_text("bootstrap mini-batches drawn"))
    output: str | None = field(default=None, metadata=help_text("write the read-outs to this JSON file"))

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a leave-one-out baseline); got {self.group_size}")
        for name in ("problems", "max_rows", "snr_mini_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not 0 <= self.accuracy_lower <= self.accuracy_upper <= 1:
            raise ValueError(f"accuracy_lower/accuracy_upper must satisfy 0 <= lower <= upper <= 1; got "
                             f"{self.accuracy_lower}, {self.accuracy_upper}")
        if not 0 < self.uncertain_below <= 1:
            raise ValueError(f"uncertain_below must lie in (0, 1]; got {self.uncertain_below}")


# The option groups of ``prime-rl diagnose`` and its own defaults for shared options: policy and PRM
# read the toy's prompts verbatim, in float32 (the credit read-outs compare small log-ratios), 16
# responses per forward pass.
ARGUMENT_GROUPS = (DiagnoseArguments, ModelArguments, PRMReadingArguments, LoadArguments)
DEFAULTS = {"prm_context": "prompt", "dtype": "float32", "batch_size": 16}


# ------------------------------------------------------------------------------------------------
# responses with labels


@dataclass(frozen=True)
class LabelledResponse:
    """One response: what the models read before it, its text and step spans, its first erroneous
    step (or :data:`~primekit.rl.credit.NO_ERROR_LABEL` / ``UNKNOWN_ERROR_LABEL``), its outcome."""

    prompt: Any  # text, or chat messages
    text: str
    spans: tuple[tuple[int, int], ...]
    error_step: int
    outcome: float


def toy_label(prompt: str, text: str, correct: bool) -> int:
    """The first wrong line of a toy response; an unreadable response (no worked steps) is
    error-free when its answer is right and wrong at an unknown step otherwise."""
    from primekit.prm.localisation import step_errors  # loads torch: imported on use
    from primekit.rl.credit import NO_ERROR_LABEL, UNKNOWN_ERROR_LABEL  # loads torch: imported on use

    wrong = step_errors(prompt, text)
    if wrong is None:
        return NO_ERROR_LABEL if correct else UNKNOWN_ERROR_LABEL
    return wrong[0] if wrong else NO_ERROR_LABEL


def toy_responses(world: str, policy: str, problems: int, group_size: int, temperature: float,
                  seed: int) -> list[LabelledResponse]:
    """``group_size`` samples of ``policy`` on each of the first ``problems`` held-out problems of
    toy world ``world``, graded and labelled line by line."""
    from primekit import toy  # loads torch: imported on use
    from primekit.generation import SamplingSpec, TransformersGenerator  # loads torch: imported on use
    from primekit.models import load_causal_lm, load_tokenizer  # loads torch: imported on use

    if world not in toy.WORLDS:
        raise InputError(f"unknown toy world '{world}' (choose from {', '.join(toy.WORLDS)})", field="data")
    spec = toy.WORLDS[world]
    held_out = toy.test_problems(problems, spec)
    generator = TransformersGenerator(load_causal_lm(policy, dtype="float32"), load_tokenizer(policy),
                                      batch_size=256, show_progress=False)
    groups = generator.generate([p.prompt for p in held_out], SamplingSpec(
        n=group_size, temperature=temperature, max_new_tokens=max_sequence_tokens(spec.task), seed=seed))
    pairs = [(problem, sample.text) for problem, group in zip(held_out, groups) for sample in group]
    grades = grade_many([(text, problem.answer) for problem, text in pairs])
    return [LabelledResponse(problem.prompt, text, split_steps(text, "newline").spans if text.strip() else ((0, 0),),
                             toy_label(problem.prompt, text, bool(correct)), float(correct))
            for (problem, text), correct in zip(pairs, grades)]


def _outcome(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or value in (0, 1):
        return float(value)
    raise InputError(f"expected a bool or 0/1, got {value!r}", path=where, field=name)


def read_labelled_file(path: str | Path, args: DiagnoseArguments,
                       prm_context: str = DEFAULTS["prm_context"]) -> list[LabelledResponse]:
    """Rows of a JSON/JSONL file with a problem, its steps, the first erroneous step and the
    outcome (field names in ``args``), grouped (see the module docstring); at most
    ``args.max_rows``, half with an erroneous step and half without. ``prm_context``: what the
    models read before a response (:func:`~primekit.prm.reading.prm_prompt`)."""
    from primekit.rl.credit import NO_ERROR_LABEL  # loads torch: imported on use

    rows = []
    for index, row in enumerate(read_json_or_jsonl(path)):
        where = f"{path}[{index}]"
        steps = require_field(row, args.steps_field, path=where, line=None, kind=list)
        if not steps or not all(isinstance(step, str) for step in steps):
            raise InputError("expected a non-empty list of step strings", path=where, field=args.steps_field)
        label = require_field(row, args.error_field, path=where, line=None, kind=int)
        if not NO_ERROR_LABEL <= label < len(steps):
            raise InputError(f"expected -1 or a step index below {len(steps)}, got {label}", path=where,
                             field=args.error_field)
        problem = require_field(row, args.prompt_field, path=where, line=None, kind=str)
        known = join_steps(steps)
        prompt = prm_prompt(Query(problem, problem), prm_context)
        rows.append((row.get(args.group_field), LabelledResponse(
            prompt, known.text, known.spans, label, _outcome(row.get(args.outcome_field), where, args.outcome_field))))
    wrong = [item for item in rows if item[1].error_step != NO_ERROR_LABEL][:(args.max_rows + 1) // 2]
    right = [item for item in rows if item[1].error_step == NO_ERROR_LABEL][:args.max_rows // 2]
    kept = {id(item) for item in wrong + right}
    chosen = [item for item in rows if id(item) in kept]
    if any(group is not None for group, _ in chosen):
        return _by_group_field(chosen, args.group_size, path)
    return pseudo_groups([response for _, response in chosen], args.group_size)


def _by_group_field(rows: list[tuple[Any, LabelledResponse]], group_size: int, path) -> list[LabelledResponse]:
    groups: dict[str, list[LabelledResponse]] = {}
    for group, response in rows:
        if group is None:
            raise InputError("some rows have a group and some do not", path=path)
        groups.setdefault(json.dumps(group), []).append(response)
    if any(len(members) != group_size for members in groups.values()):
        raise InputError(f"every group needs exactly group_size={group_size} rows", path=path)
    return [response for members in groups.values() for response in members]


def pseudo_groups(responses: Sequence[LabelledResponse], group_size: int) -> list[LabelledResponse]:
    """Rows of different problems dealt into groups of ``group_size``: wrong and right outcomes
    alternate (while both last), and a last incomplete group is dropped."""
    wrong = [r for r in responses if r.outcome < 1]
    right = [r for r in responses if r.outcome >= 1]
    order: list[LabelledResponse] = []
    while wrong or right:
        for pool in (wrong, right):
            if pool:
                order.append(pool.pop(0))
    return order[:len(order) - len(order) % group_size]


# ------------------------------------------------------------------------------------------------
# the batch the models read


@dataclass
class CreditBatch:
    """Right-padded prompt + response rows and, over the same (B, L) columns, each response
    token's step; per row its first erroneous step and outcome."""

    input_ids: Any
    attention_mask: Any
    response_mask: Any
    token_steps: Any
    error_steps: Any
    outcomes: Any
    group_size: int


def encode_batch(tokenizer, responses: Sequence[LabelledResponse], group_size: int,
                 append_eos: bool = True) -> CreditBatch:
    """Tokenize the responses as a PRM reads them (:func:`primekit.prm.data.encode_responses`)."""
    import torch  # heavy: loaded on use, so importing this module stays fast

    from primekit.prm.data import encode_responses, join_right_padded  # loads torch: imported on use

    if not responses or len(responses) % group_size:
        raise InputError(f"{len(responses)} responses do not make whole groups of {group_size}")
    encoded = encode_responses(tokenizer, [r.prompt for r in responses], [r.text for r in responses],
                               append_eos=append_eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = join_right_padded([e.prompt_ids for e in encoded], [e.response_ids for e in encoded], pad)
    steps = torch.zeros_like(batch["input_ids"])
    for row, (item, response) in enumerate(zip(encoded, responses)):
        begin = len(item.prompt_ids)
        steps[row, begin:begin + len(item.response_ids)] = torch.tensor(token_steps(item.offsets, response.spans))
    return CreditBatch(batch["input_ids"], batch["attention_mask"], batch["completion_mask"], steps,
                       torch.tensor([r.error_step for r in responses]),
                       torch.tensor([r.outcome for r in responses], dtype=torch.get_default_dtype()), group_size)


def _positions(attention_mask):
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def policy_token_statistics(model, batch: CreditBatch, batch_size: int = 16):
    """(p_t, sum_v pi_v^2) of every response token under ``model``, (B, L), 0 elsewhere."""
    import torch  # heavy: loaded on use, so importing this module stays fast

    probs = torch.zeros(batch.input_ids.shape)
    squares = torch.zeros(batch.input_ids.shape)
    device = next(model.parameters()).device
    for start in range(0, len(batch.input_ids), batch_size):
        rows = slice(start, start + batch_size)
        ids, attention = batch.input_ids[rows].to(device), batch.attention_mask[rows].to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attention, position_ids=_positions(attention),
                           use_cache=False).logits[:, :-1].float()
        distribution = logits.softmax(dim=-1)
        taken = distribution.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        mask = batch.response_mask[rows, 1:].bool().to(device)
        probs[rows, 1:] = torch.where(mask, taken, 0.0).cpu()
        squares[rows, 1:] = torch.where(mask, (distribution ** 2).sum(-1), 0.0).cpu()
    return probs, squares


def per_group_gradients(model, batch: CreditBatch, advantages, groups: Sequence[int]):
    """(G, P) parameter gradients of -sum_t A_t log p_t over each listed group's tokens, one
    matrix per scheme: ``advantages`` maps a scheme to its (B, L) advantages."""
    import torch  # heavy: loaded on use, so importing this module stays fast

    from primekit.prm.implicit import response_logprobs  # loads torch: imported on use

    parameters = list(model.parameters())
    for parameter in parameters:  # a loaded model may come frozen; its weights are not changed here
        parameter.requires_grad_(True)
    device = parameters[0].device
    rows_of = [slice(g * batch.group_size, (g + 1) * batch.group_size) for g in groups]
    result = {name: torch.zeros(len(groups), sum(p.numel() for p in parameters)) for name in advantages}
    for index, rows in enumerate(rows_of):
        logps = response_logprobs(model, batch.input_ids[rows], batch.attention_mask[rows],
                                  batch.response_mask[rows])
        for number, (name, values) in enumerate(advantages.items()):
            loss = -(values[rows].to(device) * logps).sum()
            grads = torch.autograd.grad(loss, parameters, retain_graph=number < len(advantages) - 1,
                                        allow_unused=True)
            result[name][index] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().cpu()
                                             for g, p in zip(grads, parameters)])
    return result


# ------------------------------------------------------------------------------------------------
# the read-out


def trained_rows(outcomes, group_size: int, args: DiagnoseArguments):
    """(B,) bool: the rows of the groups the accuracy filter keeps (every row without it)."""
    import torch  # heavy: loaded on use, so importing this module stays fast

    from primekit.rl.filtering import accuracy_band_mask  # loads torch: imported on use

    if not args.filter_accuracy:
        return torch.ones(len(outcomes), dtype=torch.bool)
    kept = accuracy_band_mask(outcomes, group_size, args.accuracy_lower, args.accuracy_upper)
    return kept.repeat_interleave(group_size)


def diagnose_batch(batch: CreditBatch, probs, squares, prm_q: dict[str, Any], args: DiagnoseArguments,
                   model=None) -> dict[str, Any]:
    """Every scheme's read-out on one batch: RLOO, PRIME with each PRM of ``prm_q`` (name -> its
    (B, L) log-ratios), PRIME with the perfect PRM; with ``model`` (the policy), parameter-gradient
    cosines and signal-to-noise ratios too."""

    from primekit.rl.credit import (  # loads torch: imported on use
        bootstrap_snr,
        perfect_prm_q,
        scheme_advantages,
        scheme_credit,
        token_regions,
    )

    valid = trained_rows(batch.outcomes, batch.group_size, args)
    if not bool(valid.any()):
        raise InputError("no group passes the accuracy filter (all right or all wrong); "
                         "sample more problems or pass --filter_accuracy false")
    mask = batch.response_mask.bool() & valid.unsqueeze(-1)
    regions = token_regions(batch.token_steps, batch.error_steps, mask)
    perfect_q = perfect_prm_q(batch.token_steps, batch.error_steps, batch.response_mask, args.perfect_penalty)
    coefficients = dict(process_coef=args.process_reward_coef, outcome_coef=args.outcome_reward_coef)
    schemes = {"RLOO (outcome only)": scheme_advantages(None, batch.outcomes, batch.response_mask, batch.group_size,
                                                        valid, outcome_coef=args.outcome_reward_coef)}
    for name, q in prm_q.items():
        schemes[name] = scheme_advantages(q, batch.outcomes, batch.response_mask, batch.group_size, valid,
                                          **coefficients)
    perfect_name = "PRIME, perfect PRM"
    schemes[perfect_name] = scheme_advantages(perfect_q, batch.outcomes, batch.response_mask, batch.group_size,
                                              valid, **coefficients)
    readouts = {name: scheme_credit(name, values, schemes[perfect_name], probs, squares, regions, mask,
                                    args.uncertain_below) for name, values in schemes.items()}
    groups = valid.view(-1, batch.group_size)[:, 0].nonzero().flatten().tolist()
    if model is not None and len(groups) >= 2:
        gradients = per_group_gradients(model, batch, schemes, groups)
        reference = gradients[perfect_name].double().sum(0)
        for name, matrix in gradients.items():
            full = matrix.double().sum(0)
            cosine = float(full @ reference / (full.norm() * reference.norm()).clamp(min=1e-300))
            snr = bootstrap_snr(matrix.double() @ matrix.double().T, args.snr_mini_batch, args.snr_resamples,
                                args.seed)
            readouts[name] = type(readouts[name])(**{**asdict(readouts[name]), "parameter_cosine_with_perfect": cosine,
                                                     "gradient_snr": snr})
    labelled = batch.error_steps[valid]
    return {"responses": int(valid.sum()), "groups": len(groups), "sampled_responses": len(valid),
            "accuracy": float(batch.outcomes[valid].mean()),
            "with_labelled_error": int((labelled >= 0).sum()), "error_free": int((labelled == -1).sum()),
            "right_answer_wrong_step": int(((labelled >= 0) & (batch.outcomes[valid] >= 1)).sum()),
            "tokens": int(mask.sum()), "uncertain_tokens": int((mask & (probs < args.uncertain_below)).sum()),
            "schemes": {name: asdict(value) for name, value in readouts.items()}}


def _source(args: DiagnoseArguments) -> tuple[str, str | None]:
    """(kind, name): ('toy', world), ('file', path)."""

    if args.data == "toy" or args.data.startswith("toy:"):
        return "toy", args.data.partition(":")[2] or "default"
    if args.data.startswith("processbench:"):
        path = data_dir() / "processbench" / f"{args.data.partition(':')[2]}.json"
        if not path.is_file():
            raise InputError("ProcessBench split not in the data folder", path=path, field="data")
        return "file", str(path)
    if not Path(args.data).is_file():
        raise InputError("no such file", path=args.data, field="data")
    return "file", args.data


def run(args: DiagnoseArguments, model_args: ModelArguments | None = None,
        reading: PRMReadingArguments | None = None, load: LoadArguments | None = None) -> dict[str, Any]:
    """Load the responses and models that the options name and read out every scheme (unset
    groups: their defaults, with :data:`DEFAULTS`)."""
    import torch  # heavy: loaded on use, so importing this module stays fast

    from primekit.models import load_causal_lm, load_tokenizer  # loads torch: imported on use

    model_args = model_args or ModelArguments()
    reading = reading or PRMReadingArguments(prm_context=DEFAULTS["prm_context"])
    load = load or LoadArguments(dtype=DEFAULTS["dtype"], batch_size=DEFAULTS["batch_size"])
    kind, name = _source(args)
    settings = None
    if reading.prm is not None:

        settings = resolve_reading(reading)
    if model_args.model is not None:
        policy = model_args.model
    elif kind == "toy":
        from primekit import toy  # loads torch: imported on use

        if name not in toy.WORLDS:
            raise InputError(f"unknown toy world '{name}' (choose from {', '.join(toy.WORLDS)})", field="data")
        policy = str(toy.policy_path(toy.WORLDS[name]))
    elif settings is not None and settings.prm_ref is not None:
        policy = settings.prm_ref
    else:
        raise InputError("name the policy being updated (--model) or a PRM with a recorded reference", field="model")
    if kind == "toy":
        responses = toy_responses(name, policy, args.problems, args.group_size, args.temperature, args.seed)
    else:
        responses = read_labelled_file(name, args, reading.prm_context)
    device = load.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_causal_lm(policy, dtype=load.dtype, device=device)
    tokenizer = load_tokenizer(policy)
    prm_q = {}
    append_eos = True if settings is None else settings.append_eos
    batch = encode_batch(tokenizer, responses, args.group_size, append_eos)
    if settings is not None:
        from primekit.prm.implicit import ImplicitPRM  # loads torch: imported on use

        prm = ImplicitPRM.from_settings(settings, dtype=load.dtype, device=device, batch_size=load.batch_size)
        if prm.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise InputError("the PRM and the policy must share a tokenizer (PRIME's PRM starts from the policy)",
                             field="prm")
        prm_q[f"PRIME, PRM {Path(reading.prm).name}"] = _prm_logratios(prm, batch, load.batch_size)
    probs, squares = policy_token_statistics(model, batch, load.batch_size)
    small = sum(p.numel() for p in model.parameters()) <= args.max_gradient_parameters
    result = diagnose_batch(batch, probs, squares, prm_q, args, model=model if small else None)
    result["settings"] = {**asdict(args), **asdict(model_args), **asdict(reading), **asdict(load),
                          "policy": policy}
    if args.output:

        atomic_write_json(args.output, result)
    return result


def _prm_logratios(prm, batch: CreditBatch, batch_size: int):
    import torch  # heavy: loaded on use, so importing this module stays fast

    parts = [prm.token_logratios(batch.input_ids[start:start + batch_size],
                                 batch.attention_mask[start:start + batch_size],
                                 batch.response_mask[start:start + batch_size]).float().cpu()
             for start in range(0, len(batch.input_ids), batch_size)]
    return torch.cat(parts)


def render(result: dict[str, Any], title: str) -> str:
    """The read-out as a Markdown table (one row per scheme)."""
    def number(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{title}: {result['responses']} trained responses in {result['groups']} groups (of "
             f"{result['sampled_responses']}), accuracy {result['accuracy']:.3f}; {result['with_labelled_error']} "
             f"with a labelled erroneous step ({result['right_answer_wrong_step']} of them with a right answer), "
             f"{result['error_free']} error-free; {result['uncertain_tokens']} of {result['tokens']} tokens "
             "uncertain.", "",
             "| scheme | on the erroneous step | before it | after it | error-free responses | "
             "error step unknown | right uncertain tokens | top token on the error | grad-norm share on the error "
             "| logit cos. with perfect | param. cos. with perfect | gradient SNR |",
             "|---|" + "---|" * 11]
    for name, scheme in result["schemes"].items():
        shares = scheme["weight_shares"]
        rate = scheme["error_step_hits"] / scheme["labelled_responses"] if scheme["labelled_responses"] else None
        lines.append(f"| {name} | " + " | ".join(number(shares[i]) for i in (2, 1, 3, 0, 4)) +
                     f" | {number(scheme['uncertain_weight_share'])} | {number(rate)} | "
                     f"{number(scheme['gradient_shares'][2])} | {number(scheme['logit_cosine_with_perfect'])} | "
                     f"{number(scheme['parameter_cosine_with_perfect'])} | {number(scheme['gradient_snr'], 2)} |")
    return "\n".join(lines)
