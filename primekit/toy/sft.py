"""SFT warm-up of the toy policy with TRL's ``SFTTrainer``, cached on disk.

The cache key is a hash of every setting below, so changing a knob retrains instead of silently
reusing a stale policy, and a fixed seed gives the same policy on every machine. Knobs added after
the first release (marked with :data:`~primekit.toy.task.ADDED_KNOB`) enter the key only when set
away from their default, so the default policy keeps its key and nobody retrains it for nothing.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import torch

from primekit.paths import cache_dir
from primekit.toy.model import random_model
from primekit.toy.task import ADDED_KNOB, Problem, TaskSpec, make_problems, max_sequence_tokens, sft_target
from primekit.toy.tokenizer import build_tokenizer, tokenizer_fingerprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmupSpec:
    """Everything that determines the warm-up policy (and so its cache key).

    The SFT targets are worked solutions except for ``skip_rate`` (guess the answer without steps),
    ``slip_rate`` (one step slips), ``step_slip_rate`` (each step slips independently),
    ``carry_slip_rate`` (a carry or borrow is forgotten), ``systematic_slip_rate`` (a step adding
    ``systematic_operand`` is one too high) and ``compensating_slip_rate`` (two slips that cancel);
    see :func:`primekit.toy.task.sft_target`.
    """

    task: TaskSpec = field(default_factory=TaskSpec)
    skip_rate: float = 0.2
    slip_rate: float = 0.1
    num_train_problems: int = 20_000
    steps: int = 2200
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    step_slip_rate: float = field(default=0.0, metadata=ADDED_KNOB)
    carry_slip_rate: float = field(default=0.0, metadata=ADDED_KNOB)
    systematic_slip_rate: float = field(default=0.0, metadata=ADDED_KNOB)
    systematic_operand: int = field(default=7, metadata=ADDED_KNOB)
    compensating_slip_rate: float = field(default=0.0, metadata=ADDED_KNOB)

    def __post_init__(self) -> None:
        for name in ("skip_rate", "slip_rate", "step_slip_rate", "carry_slip_rate", "systematic_slip_rate",
                     "compensating_slip_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {getattr(self, name)}")
        if self.skip_rate + self.slip_rate > 1.0:
            raise ValueError(f"skip_rate + slip_rate must be <= 1; got {self.skip_rate + self.slip_rate}")

    def key(self) -> str:
        """Hash of these settings (added knobs at their default left out, so older policies keep
        their key) and of the tokenizer the policy is saved with."""
        settings = {**_key_fields(self), "tokenizer": tokenizer_fingerprint()}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def _key_fields(spec) -> dict:
    """``asdict(spec)`` without the added knobs that still hold their default (recursively)."""
    values = {}
    for item in fields(spec):
        value = getattr(spec, item.name)
        if item.metadata.get("key_omits_default") and value == item.default:
            continue
        values[item.name] = _key_fields(value) if is_dataclass(value) else value
    return values


DEFAULT_WARMUP = WarmupSpec()

#: Named toy worlds, each with its own cached policy (``policy_path(WORLDS[name])``). Their SFT
#: policies' greedy and sampled accuracies, by chain length, are measured and reported by
#: ``benchmarks/rl_ablation.py`` (BENCHMARKS.md, "The PRIME ablation at toy scale").
#:
#: * ``default``: the demo's (3 operands of 2 digits; 20% skipped-step and 10% one-slip targets).
#: * ``long-chains``: 2 to 8 steps of 1-digit +/- arithmetic the policy masters greedily; no
#:   skipped steps; each step of a target slips with chance 0.08, carried to the end, so sampled
#:   accuracy falls with the chain's length.
#: * ``carry-chains``: 2 to 8 additions of 1-digit numbers; a target forgets a needed carry with
#:   chance 0.3, so a long chain holds several uncertain steps. The world of
#:   ``benchmarks/rl_ablation.py``.
#:
#: Candidate worlds for a dense reward, read with ``prime-rl diagnose`` (``benchmarks/credit_diagnostic.py``);
#: their warm-ups run fewer SFT steps (700-1000 of 2200) to fit the CPU budget of a read-out:
#:
#: * ``confident-slips``: 2 to 8 additions of 1-digit numbers; a step adding 7 is written one too
#:   high with chance 0.8 (a confident systematic error), and half the lines are written with
#:   spaces (harmless randomness the policy is unsure about).
#: * ``sparse-outcomes``: 8 to 12 additions of 1-digit numbers forgetting a needed carry with
#:   chance 0.5, so few sampled answers are right.
#: * ``compensating-slips``: 2 to 8 additions of 1-digit numbers; each step slips with chance
#:   0.05, and with chance 0.3 a target slips by +d at one step and -d at a later one (right
#:   answer, wrong work).
WORLDS: dict[str, WarmupSpec] = {
    "default": DEFAULT_WARMUP,
    "long-chains": WarmupSpec(task=TaskSpec(num_operands=3, max_operands=9, max_digits=1),
                              skip_rate=0.0, slip_rate=0.0, step_slip_rate=0.08),
    "carry-chains": WarmupSpec(task=TaskSpec(num_operands=3, max_operands=9, max_digits=1, operators="+"),
                               skip_rate=0.0, slip_rate=0.0, carry_slip_rate=0.3),
    "confident-slips": WarmupSpec(task=TaskSpec(num_operands=3, max_operands=9, max_digits=1, operators="+",
                                                space_rate=0.5),
                                  skip_rate=0.0, slip_rate=0.0, systematic_slip_rate=0.8, systematic_operand=7,
                                  steps=1000),
    "sparse-outcomes": WarmupSpec(task=TaskSpec(num_operands=9, max_operands=13, max_digits=1, operators="+"),
                                  skip_rate=0.0, slip_rate=0.0, carry_slip_rate=0.5, steps=700),
    "compensating-slips": WarmupSpec(task=TaskSpec(num_operands=3, max_operands=9, max_digits=1, operators="+"),
                                     skip_rate=0.0, slip_rate=0.0, step_slip_rate=0.05, compensating_slip_rate=0.3,
                                     steps=1000),
}
TRAIN_SEED_OFFSET, TEST_SEED_OFFSET = 1, 2  # train and test problems never share a generator


def train_problems(spec: WarmupSpec = DEFAULT_WARMUP) -> list[Problem]:
    """The SFT warm-up's problems (also the RL prompts of the toy recipe and the ablation)."""
    return make_problems(spec.num_train_problems, spec.seed * 1000 + TRAIN_SEED_OFFSET, spec.task)


@functools.lru_cache(maxsize=8)
def _train_prompts(spec: WarmupSpec) -> frozenset[str]:
    return frozenset(problem.prompt for problem in train_problems(spec))


def test_problems(n: int = 1000, spec: WarmupSpec = DEFAULT_WARMUP) -> list[Problem]:
    """``n`` held-out problems, none of whose prompts is a training prompt of ``spec`` (the test
    generator's draws that repeat one are skipped). Short chains of one-digit operands have few
    distinct prompts, most of them in the training set, so held-out problems lean to longer chains
    than training ones; ``test_problems(n)`` is a prefix of ``test_problems(m)`` for n < m."""
    return make_problems(n, spec.seed * 1000 + TEST_SEED_OFFSET, spec.task, exclude_prompts=_train_prompts(spec))


def _train(spec: WarmupSpec, output_dir: Path) -> None:
    from datasets import Dataset  # datasets and TRL load only when a policy has to be trained
    from trl import SFTConfig, SFTTrainer  # heavy: loaded on use, so importing this module stays fast

    rng = random.Random(spec.seed)
    tokenizer = build_tokenizer()
    problems = train_problems(spec)
    rows = [{"prompt": p.prompt, "completion": sft_target(p, rng, skip_rate=spec.skip_rate, slip_rate=spec.slip_rate,
                                                           step_slip_rate=spec.step_slip_rate,
                                                           carry_slip_rate=spec.carry_slip_rate,
                                                           systematic_slip_rate=spec.systematic_slip_rate,
                                                           systematic_operand=spec.systematic_operand,
                                                           compensating_slip_rate=spec.compensating_slip_rate,
                                                           space_rate=spec.task.space_rate)}
            for p in problems]
    config = SFTConfig(
        output_dir=str(output_dir / "trainer"), max_steps=spec.steps,
        per_device_train_batch_size=spec.batch_size, learning_rate=spec.learning_rate,
        adam_beta2=0.98, weight_decay=0.01, warmup_steps=50, lr_scheduler_type="cosine",
        logging_steps=100, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
        seed=spec.seed, dataloader_drop_last=True,
        max_length=max(64, max_sequence_tokens(spec.task)), disable_tqdm=False)
    torch.manual_seed(spec.seed)
    trainer = SFTTrainer(model=random_model(spec.seed), args=config,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    trainer.model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "warmup_spec.json").write_text(json.dumps(asdict(spec), indent=2))
    shutil.rmtree(output_dir / "trainer", ignore_errors=True)


def policy_path(spec: WarmupSpec = DEFAULT_WARMUP) -> Path:
    """Local directory of the SFT-warmed toy policy, training it on first use (a few CPU minutes).

    Training writes to a temporary directory that is renamed into place, so a killed run never
    leaves a half-written policy behind and two processes never read one.
    """
    target = cache_dir() / "toy" / f"policy-{spec.key()}"
    if (target / "warmup_spec.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"

    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first one's policy
        if (target / "warmup_spec.json").exists():
            return target
        logger.warning("training the toy policy once (cached in %s)", target)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
        try:
            _train(spec, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
