"""``prime-rl train``: PRIME online RL (or its RLOO / frozen-PRM baselines) on TRL.

With no arguments it runs the toy recipe (``recipes/toy_prime.yaml``): PRIME on the embedded
arithmetic world, on CPU, in a few minutes, with held-out accuracy before and after. Any recipe or
option can be given as ``--config FILE`` and ``--key value``; every PrimeConfig / GRPOConfig /
TrainingArguments field is an option (``prime-rl train --help``). Multi-GPU runs go through
accelerate like TRL's own scripts::

    accelerate launch --config_file recipes/accelerate/multi_gpu_8.yaml \\
        -m primekit.rl.commands --config recipes/eurus_2_7b_prime.yaml

Everything the user can get wrong (an unknown key, a band outside [0, 1], n < 2, a missing data
field) is reported in one line before any model is loaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.console import Console
from rich.table import Table

from primekit import toy
from primekit.arguments import ModelArguments
from primekit.command_line import run_command
from primekit.config import help_text, parse_config, resume_checkpoint
from primekit.errors import InputError
from primekit.io import atomic_write_json
from primekit.paths import recipes_dir
from primekit.rl.checkpoint import PRM_DIR
from primekit.rl.config import PrimeConfig
from primekit.rl.data import PromptFormat, load_prompt_dataset, toy_dataset
from primekit.rl.diagnose import ARGUMENT_GROUPS
from primekit.rl.diagnose import DEFAULTS as DIAGNOSE_DEFAULTS
from primekit.rl.diagnose import render as render_diagnosis
from primekit.rl.diagnose import run as run_diagnosis
from primekit.rl.effective import ConfigFormat, effective_config, render_effective_config
from primekit.rl.plan.formulas import GIB, USABLE_GPU_FRACTION, VLLM_ASLEEP_BYTES, usable_gpu_bytes
from primekit.rl.plan.host_memory import host_memory
from primekit.rl.plan.launcher import BACKENDS, Backend, backend_from_accelerate_config, backend_from_name
from primekit.rl.plan.memory import check_before_training, longest_prompt_tokens, plan_run, read_shapes
from primekit.rl.plan.report import render_plan

DEFAULT_RECIPE = recipes_dir() / "toy_prime.yaml"


@dataclass
class RunArguments(ModelArguments):
    """What to train (``model``, shared with the other tools) on what, and how to report it; the
    algorithm's options are PrimeConfig's."""

    dataset: str = field(default="toy", metadata=help_text(
        "training prompts: 'toy', a .jsonl/.json file, or a datasets name (e.g. PRIME-RL/Eurus-2-RL-Data)"))
    dataset_split: str = field(default="train", metadata=help_text("split of a datasets name"))
    prompt_field: str = field(default="prompt", metadata=help_text(
        "field holding the problem (a string, or a list of chat messages); dotted for nested fields"))
    answer_field: str = field(default="answer", metadata=help_text(
        "field holding the gold answer; dotted for nested fields (e.g. reward_model.ground_truth)"))
    prompt_template: str = field(default="{problem}", metadata=help_text(
        "str.format pattern turning a problem string into the prompt ({problem} is the slot)"))
    chat: bool = field(default=False, metadata=help_text(
        "wrap string prompts as a user message so the tokenizer's chat template is applied"))
    system_prompt: str | None = field(default=None, metadata=help_text("system message for chat prompts"))
    max_train_prompts: int | None = field(default=None, metadata=help_text("use only the first N prompts"))
    heldout: str | None = field(default="toy", metadata=help_text(
        "held-out problems scored before, during and after training: 'toy', a .jsonl/.json file "
        "(same fields as the dataset), or 'none'"))
    heldout_size: int = field(default=1000, metadata=help_text("held-out problems to score"))
    heldout_every_steps: int = field(default=0, metadata=help_text(
        "also score the held-out problems every N optimizer steps (0: only before and after)"))
    strict_memory: bool = field(default=False, metadata=help_text(
        "refuse to start when the memory plan (prime-rl plan) says the run does not fit its GPUs; "
        "without it that is a warning"))

    def __post_init__(self) -> None:
        if self.heldout_size < 1:
            raise ValueError(f"heldout_size must be >= 1; got {self.heldout_size}")
        if self.heldout_every_steps < 0:
            raise ValueError(f"heldout_every_steps must be >= 0; got {self.heldout_every_steps}")
        if self.max_train_prompts is not None and self.max_train_prompts < 1:
            raise ValueError(f"max_train_prompts must be >= 1; got {self.max_train_prompts}")
        if "{problem}" not in self.prompt_template:
            raise ValueError("prompt_template needs a {problem} slot")
        if self.heldout in ("none", ""):
            self.heldout = None

    def prompt_format(self) -> Any:
        """The :class:`~primekit.rl.data.PromptFormat` of ``prompt_template``, ``chat``, ``system_prompt``."""
        return PromptFormat(self.prompt_template, self.chat, self.system_prompt)

    def load_prompts(self, source: str, **options: Any) -> Any:
        """The prompt dataset of ``source`` read with this run's fields and prompt format
        (``options``: :func:`~primekit.rl.data.load_prompt_dataset`'s ``split``, ``limit``)."""
        return load_prompt_dataset(source, prompt_field=self.prompt_field, answer_field=self.answer_field,
                                   prompt_format=self.prompt_format(), **options)


def parse_train_args(argv: Sequence[str], *extra: type, prog: str = "prime-rl train",
                     description: str = "PRIME online RL with implicit process rewards (TRL GRPOTrainer)",
                     config_class: type[PrimeConfig] = PrimeConfig) -> tuple[Any, ...]:
    """Options of ``prime-rl train`` (then those of the ``extra`` dataclasses); without ``--config``
    the toy recipe sets the defaults."""
    args = list(argv)
    if "--config" not in args and not {"-h", "--help"} & set(args):
        if not DEFAULT_RECIPE.is_file():
            raise InputError("no --config given and the default toy recipe is missing", path=DEFAULT_RECIPE)
        args = ["--config", str(DEFAULT_RECIPE), *args]
    classes = [RunArguments, config_class, *extra]
    return parse_config(classes, args, prog=prog, description=description)[:len(classes)]


def _heldout(run: RunArguments, tokenizer: Any) -> tuple[list[str], list[str], list[str] | None] | None:
    """Held-out prompts rendered to text, their answers, and their tasks (None: all math)."""
    if run.heldout is None:
        return None
    if run.heldout == "toy":
        data = toy_dataset(toy.test_problems(run.heldout_size), run.prompt_format())
    else:
        data = run.load_prompts(run.heldout, limit=run.heldout_size)
    prompts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
               for p in data["prompt"]]
    return prompts, list(data["answer"]), list(data["task"]) if "task" in data.column_names else None


def _variant(config: PrimeConfig) -> str:
    if not config.uses_prm:
        return "RLOO (outcome reward only)"
    return "PRIME with a frozen PRM" if config.prm_update == "none" else f"PRIME (PRM update {config.prm_update})"


def train(argv: Sequence[str]) -> int:
    run, config = parse_train_args(argv)[:2]
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)

    # torch, transformers and TRL's trainer: imported once the options parsed, so a bad one fails fast
    from primekit.models import load_tokenizer, resolve_model_name
    from primekit.rl.heldout import HeldOutAccuracy, plot_training_curve  # loads torch: imported on use
    from primekit.rl.trainer import PrimeTrainer  # loads torch: imported on use

    dataset = run.load_prompts(run.dataset, split=run.dataset_split, limit=run.max_train_prompts)
    model_path = resolve_model_name(run.model)
    tokenizer = load_tokenizer(model_path)
    check_before_training(config, model_path, dataset["prompt"], tokenizer, strict=run.strict_memory)
    heldout = _heldout(run, tokenizer)
    callbacks = []
    if heldout is not None:
        prompts, answers, tasks = heldout
        callbacks.append(HeldOutAccuracy(
            prompts, answers, tokenizer, tasks=tasks, temperature=config.temperature, max_new_tokens=config.max_completion_length,
            responses_per_step=config.generation_batch_size * config.gradient_accumulation_steps
            // config.steps_per_generation, every_steps=run.heldout_every_steps))

    started = time.perf_counter()
    trainer = PrimeTrainer(model=model_path, args=config, train_dataset=dataset, processing_class=tokenizer,
                           callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    trainer.save_state()  # <output_dir>/trainer_state.json: every logged metric (the console shows a digest)
    elapsed = time.perf_counter() - started
    if not trainer.accelerator.is_main_process:
        return 0

    output = Path(config.output_dir)
    history = callbacks[0].history if callbacks else []
    curve = output / "training_curve.png"
    plot_training_curve(curve, history, trainer.state.log_history, f"{_variant(config)} on {run.dataset}")
    summary = {"variant": _variant(config), "steps": trainer.state.global_step, "seconds": round(elapsed, 1),
               "heldout": [point.__dict__ for point in history], "resumed_from": resume,
               "model": model_path, "prm": str(output / PRM_DIR) if trainer.prm is not None else None}
    atomic_write_json(output / "summary.json", summary)
    _print_summary(summary, history, curve, output, config)
    return 0


# ----------------------------------------------------------------------------------------------
# prime-rl plan and prime-rl config

@dataclass
class PlanArguments:
    """Where the run goes: the GPUs, their memory and the parallelism (DDP / FSDP2 / FSDP2 + offload)."""

    deprecated_aliases: ClassVar[dict[str, str]] = {"backend": "parallelism"}

    gpus: int | None = field(default=None, metadata=help_text(
        "GPUs in all (one training process each); default: num_processes of --accelerate_config, else 1"))
    gpu_memory_gb: float = field(default=80.0, metadata=help_text(
        "nominal memory of one GPU in GiB (an A100-80GB has 80)"))
    gpu_usable_fraction: float = field(default=USABLE_GPU_FRACTION, metadata=help_text(
        "share of --gpu_memory_gb that CUDA exposes to PyTorch and vLLM (an 80 GB A100 or H100 reports about "
        "79.2 GiB as its total); the verdict and vLLM's share use the usable memory"))
    vllm_asleep_gb: float = field(default=VLLM_ASLEEP_BYTES / GIB, metadata=help_text(
        "GiB a colocated vLLM keeps on the GPU while sleep mode frees the rest (its CUDA graphs: TRL does "
        "not set enforce_eager); charged in every phase but generation"))
    nodes: int | None = field(default=None, metadata=help_text(
        "machines the GPUs are spread over (for the CPU memory per node under offload); default: "
        "num_machines of --accelerate_config, else 1"))
    parallelism: str | None = field(default=None, metadata=help_text(
        f"how the models are spread over the GPUs: {', '.join(BACKENDS)} (or give --accelerate_config); "
        "default: ddp"))
    accelerate_config: str | None = field(default=None, metadata=help_text(
        "accelerate config file the run is launched with; its distributed_type, fsdp_version, "
        "fsdp_offload_params, mixed_precision, num_processes and num_machines set the parallelism"))
    prompt_length: int | None = field(default=None, metadata=help_text(
        "longest prompt in tokens; default: the recipe's prompt cap, else the longest of the first "
        "1000 training prompts"))
    cpu_memory_gb: float | None = field(default=None, metadata=help_text(
        "CPU memory of one machine in GiB: the plan's CPU memory per node (offloaded states, rank 0's "
        "full-model staging, per-process overhead) gets a verdict against it"))

    def __post_init__(self) -> None:
        if self.parallelism is not None and self.parallelism not in BACKENDS:
            raise ValueError(f"parallelism must be one of {', '.join(BACKENDS)}; got '{self.parallelism}'")
        if self.parallelism is not None and self.accelerate_config is not None:
            raise ValueError("give --parallelism or --accelerate_config, not both")
        if not self.gpu_memory_gb > 0:
            raise ValueError(f"gpu_memory_gb must be > 0; got {self.gpu_memory_gb}")
        if not 0 < self.gpu_usable_fraction <= 1:
            raise ValueError(f"gpu_usable_fraction must be in (0, 1]; got {self.gpu_usable_fraction}")
        if not self.vllm_asleep_gb >= 0:
            raise ValueError(f"vllm_asleep_gb must be >= 0; got {self.vllm_asleep_gb}")
        if self.cpu_memory_gb is not None and not self.cpu_memory_gb > 0:
            raise ValueError(f"cpu_memory_gb must be > 0; got {self.cpu_memory_gb}")
        for name in ("gpus", "nodes", "prompt_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")


def planned_processes(argv: Sequence[str]) -> int:
    """The process count a ``prime-rl plan`` command line plans for (``--gpus``, else the
    ``--accelerate_config``'s), read before the recipe is parsed; 1 when neither says (a bad
    value is reported by the full parse)."""
    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument("--gpus", type=int)
    reader.add_argument("--accelerate_config")
    known, _ = reader.parse_known_args(list(argv))
    if known.gpus and known.gpus > 0:
        return known.gpus
    if known.accelerate_config:
        try:
            return backend_from_accelerate_config(known.accelerate_config).gpus
        except InputError:
            return 1
    return 1


def config_class_for(processes: int) -> type:
    """``PrimeConfig`` as it parses on ``processes`` processes. TrainingArguments takes the world
    size from the running process group, which a plan made in one process for eight GPUs does not
    have, and the batch checks (``prm_mini_batch_size`` against the trained batch) depend on it."""
    class PlannedPrimeConfig(PrimeConfig):
        @property
        def world_size(self) -> int:
            return processes

    return PlannedPrimeConfig


def plan_backend(options: PlanArguments) -> Backend:
    """The parallelism ``prime-rl plan`` was asked about: ``--accelerate_config`` or ``--parallelism``."""
    if options.accelerate_config:
        return backend_from_accelerate_config(options.accelerate_config, options.gpus, options.nodes)
    return backend_from_name(options.parallelism, options.gpus, options.nodes)


def parse_plan_args(argv: Sequence[str], *extra: type, prog: str = "prime-rl plan",
                    description: str | None = None) -> tuple[Any, ...]:
    """``prime-rl plan``'s options (and ``prime-rl config``'s): those of ``prime-rl train``, read as
    they would be on the planned number of processes, plus :class:`PlanArguments`
    and the ``extra`` dataclasses; returns (run, config, plan options, whether the run is for GPUs
    (False when the recipe sets ``use_cpu``), *extra instances)."""
    settings = dict(prog=prog, description=description or _PLAN_HELP,
                    config_class=config_class_for(planned_processes(argv)))
    try:
        run, config, options, *rest = parse_train_args(argv, PlanArguments, *extra, **settings)
        return (run, config, options, not config.use_cpu, *rest)
    except InputError:
        # a GPU recipe (bf16, no use_cpu) does not parse on a machine without one; plan it all the same
        run, config, options, *rest = parse_train_args([*argv, "--use_cpu", "true"], PlanArguments, *extra, **settings)
        return (run, config, options, True, *rest)


def plan_from_args(argv: Sequence[str], with_cpu_memory: bool = False) -> tuple[Any, ...]:
    """The memory plan that ``prime-rl plan`` prints for ``argv`` and its title (and, with
    ``with_cpu_memory``, the machine's CPU memory in bytes from ``--cpu_memory_gb``, or None)."""
    from primekit.models import load_tokenizer, resolve_model_name  # transformers: see train()

    run, config, options, on_gpu = parse_plan_args(argv)
    backend = plan_backend(options)
    model_path = resolve_model_name(run.model)
    shapes = read_shapes(config, model_path)
    prompt_tokens = options.prompt_length or config.max_prompt_length
    if prompt_tokens is None:
        dataset = run.load_prompts(run.dataset, split=run.dataset_split, limit=1000)
        prompt_tokens = longest_prompt_tokens(dataset["prompt"], load_tokenizer(model_path))
    capacity = usable_gpu_bytes(options.gpu_memory_gb, options.gpu_usable_fraction) if on_gpu else options.gpu_memory_gb * GIB
    result = plan_run(config, model_path, backend, capacity, prompt_tokens, on_gpu, shapes, options.vllm_asleep_gb * GIB)
    nodes = f" on {backend.nodes} nodes" if backend.nodes > 1 else ""
    where = (f"{backend.gpus} GPU(s){nodes} of {options.gpu_memory_gb:g} GiB ({capacity / GIB:.1f} usable)" if on_gpu
             else f"{backend.gpus} CPU process(es) of {options.gpu_memory_gb:g} GiB")
    title = f"prime-rl plan: {model_path} on {where}, {backend.label}, {result.precision.label}"
    if not with_cpu_memory:
        return result, title
    return result, title, None if options.cpu_memory_gb is None else options.cpu_memory_gb * GIB


def plan(argv: Sequence[str]) -> int:
    """``prime-rl plan``: the memory of a ``prime-rl train`` run per GPU, and whether it fits.

    Takes the options of ``prime-rl train`` (same recipe, same overrides) plus where the run goes
    (``--gpus``, ``--gpu_memory_gb``, ``--parallelism`` or ``--accelerate_config``). Reads only the
    models' config.json. Exit status 0 when the run fits, 1 when it does not.
    """
    result, title, cpu_memory = plan_from_args(argv, with_cpu_memory=True)
    render_plan(result, title, cpu_memory)
    host_fits = cpu_memory is None or host_memory(result).fits(cpu_memory)
    return 0 if result.fits and host_fits else 1


def show_config(argv: Sequence[str]) -> int:
    """``prime-rl config``: the configuration a ``prime-rl train`` run really runs with.

    Takes the options of ``prime-rl plan`` (the recipe, overrides, ``--accelerate_config``,
    ``--gpus``, ``--nodes``) and ``--format markdown|json``; reads only the models' config.json
    (the models are built on the meta device to count the optimizer's groups).
    """
    values, title, output_format = config_from_args(argv)
    print(render_effective_config(values, title, output_format))
    return 0


def config_from_args(argv: Sequence[str]) -> tuple[dict[str, Any], str, str]:
    """The effective configuration of ``argv`` (``prime-rl train`` options + plan's + ``--format``),
    its title and the output format."""
    from primekit.models import resolve_model_name  # transformers: see train()

    run, config, options, on_gpu, output = parse_plan_args(argv, ConfigFormat, prog="prime-rl config",
                                                           description=_CONFIG_HELP)
    run.model = resolve_model_name(run.model)
    backend = plan_backend(options)
    values = effective_config(run, config, backend, options.accelerate_config, on_gpu)
    title = f"prime-rl config: {run.model} on {backend.gpus} process(es), {backend.nodes} node(s), {backend.label}"
    return values, title, output.format


_CONFIG_HELP = ("the configuration a prime-rl train run really runs with (same options): TRL's resolved config, "
                "the FSDP plugin as accelerate builds it, optimizer groups, the RL schedule; no weights are loaded")
_PLAN_HELP = ("memory per GPU of a prime-rl train run (same options) under DDP / FSDP2 / FSDP2 + offload, "
              "from the models' config.json; exit status 1 when it does not fit")


def diagnose(argv: Sequence[str]) -> int:
    """``prime-rl diagnose``: where RLOO's and PRIME's negative updates land on responses with
    known erroneous steps (:mod:`primekit.rl.diagnose`); prints a Markdown table."""
    groups = parse_config(ARGUMENT_GROUPS, argv, prog="prime-rl diagnose", description=_DIAGNOSE_HELP,
                          defaults=DIAGNOSE_DEFAULTS)[:len(ARGUMENT_GROUPS)]
    print(render_diagnosis(run_diagnosis(*groups), f"prime-rl diagnose on {groups[0].data}"))
    return 0


_DIAGNOSE_HELP = ("credit assignment: the share of RLOO's / PRIME's / a perfect PRM's negative update on the "
                  "erroneous step, before and after it, on right uncertain tokens; gradient cosines and SNR")


def _print_summary(summary: dict[str, Any], history: list, curve: Path, output: Path, config: PrimeConfig) -> None:
    table = Table(title=f"prime-rl train: {summary['variant']}")
    table.add_column("", style="bold")
    table.add_column("value")
    if history:
        first, last = history[0], history[-1]
        table.add_row(f"held-out accuracy, start (T={config.temperature}, {first.num_problems} problems)",
                      f"{first.accuracy:.3f} ± {first.standard_error:.3f}")
        table.add_row(f"held-out accuracy, end (step {last.step})", f"{last.accuracy:.3f} ± {last.standard_error:.3f}")
    table.add_row("optimizer steps", str(summary["steps"]))
    table.add_row("wall time", f"{summary['seconds']:.0f} s")
    table.add_row("policy", str(output))
    if summary["prm"]:
        table.add_row("implicit PRM", summary["prm"])
    table.add_row("training curve", str(curve))
    table.add_row("summary", str(output / "summary.json"))
    Console(stderr=False).print(table)


def main() -> None:
    """``python -m primekit.rl.commands`` (the accelerate entry point) behaves like ``prime-rl train``."""
    sys.exit(run_command("prime-rl", "train", train, sys.argv[1:]))


if __name__ == "__main__":
    main()
