"""The resolved reading settings of an implicit PRM: the options a command was given, completed
from the PRM's record (:mod:`primekit.prm.reading`), with ``toy`` standing for the toy PRM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from primekit.arguments import PRMReadingArguments
from primekit.errors import InputError
from primekit.prm.reading import DEFAULT_BETA, RECORD_FILE, read_prm_record
from primekit.prm.toy_prm import ensure_toy_prm

__all__ = ["ReadingSettings", "resolve_reading"]


@dataclass(frozen=True)
class ReadingSettings:
    """Everything that decides an implicit PRM's scores, resolved (what a score cache is keyed by)."""

    prm: str
    prm_ref: str | None
    coef: float
    step_mode: str
    prm_context: str
    append_eos: bool
    read_out: str = "steps"


def resolve_reading(arguments: PRMReadingArguments, require_reference: bool = True) -> ReadingSettings:
    """The settings a reader uses: the options given, else the PRM's record, else defaults. Reads
    only the small record file (no model), so a score cache can be found before loading; ``toy``
    names the toy PRM (trained once if there is none yet)."""
    if arguments.prm is None:
        raise InputError("give the implicit PRM (--prm)", field="prm")
    prm = str(ensure_toy_prm()) if arguments.prm == "toy" else arguments.prm
    record = read_prm_record(prm)
    is_adapter = (Path(prm) / "adapter_config.json").is_file()
    reference = arguments.prm_ref or (record.reference if record else None)
    if reference is None and not is_adapter and require_reference:
        raise InputError("an implicit PRM is read against the model it was initialised from; "
                         "pass its reference (--prm_ref), e.g. Qwen/Qwen2.5-Math-7B-Instruct "
                         f"(no {RECORD_FILE} records one)", path=prm)
    coef = arguments.coef if arguments.coef is not None else (record.coef if record else DEFAULT_BETA)
    step_mode = arguments.step_mode or (record.step_mode if record else "auto")
    read_out = arguments.read_out or (record.read_out if record else "steps")
    if read_out == "card" and arguments.prm_context != "chat":
        raise InputError("read_out card reads the conversation through the PRM's chat template: "
                         "use prm_context chat (or read_out steps)", field="read_out")
    return ReadingSettings(prm=prm, prm_ref=reference, coef=coef, step_mode=step_mode,
                           prm_context=arguments.prm_context,
                           append_eos=record.append_eos if record else True, read_out=read_out)
