r"""The toy implicit PRM: :func:`ensure_toy_prm` gives the folder of the PRM that ``prime-prm
train`` without options saves (``--prm toy`` everywhere), training it once when there is none yet,
and :func:`toy_prm_data` the outcome-labelled data it trains on, sampled from the toy policy.

The data are made the way EurusPRM's Stage-1 data is made, at toy scale: sample the policy at
temperature 1 on training problems, grade each final answer against the gold one, and keep
(prompt, completion, label) triples. Wrong samples are the policy's own mistakes (skipped steps with a guessed answer,
an arithmetic slip in one step carried to the end), which is what a PRM has to learn to spot. A
held-out set comes from the toy *test* problems. Both files are cached on disk, keyed by
everything that determines them, so a second run reuses them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from primekit.io import atomic_write_jsonl
from primekit.paths import cache_dir
from primekit.prm.config import ImplicitPRMConfig, PRMModelConfig
from primekit.prm.reading import RECORD_FILE
from primekit.verifiers.math import grade_many

__all__ = ["TOY_PRM", "ToyPRMDataSpec", "ensure_toy_prm", "toy_prm_data"]

logger = logging.getLogger(__name__)

TOY_PRM = "runs/prm"  # where `prime-prm train` without options saves the toy PRM


@dataclass(frozen=True)
class ToyPRMDataSpec:
    """How many samples to draw, and how."""

    num_train_problems: int = 2000
    num_eval_problems: int = 500
    samples_per_problem: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    def key(self, policy: str) -> str:
        """Cache key: the settings, the policy and the held-out prompts themselves, so that a change
        in how held-out problems are drawn never reuses an evaluation file of the old draw."""
        from primekit import toy  # loads torch: imported on use

        held_out = [problem.prompt for problem in toy.test_problems(self.num_eval_problems)]
        blob = json.dumps({"spec": asdict(self), "policy": str(policy), "held_out": held_out}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _sample_and_grade(policy: str, problems, spec: ToyPRMDataSpec, seed: int) -> list[dict]:
    from primekit.generation import SamplingSpec, TransformersGenerator  # loads torch: imported on use
    from primekit.models import load_causal_lm, load_tokenizer  # loads torch: imported on use

    generator = TransformersGenerator(load_causal_lm(policy, dtype="float32"), load_tokenizer(policy),
                                      batch_size=256)
    sampling = SamplingSpec(n=spec.samples_per_problem, temperature=spec.temperature,
                            max_new_tokens=spec.max_new_tokens, seed=seed)
    outputs = generator.generate([problem.prompt for problem in problems], sampling)
    samples = [(problem, sample.text) for problem, completions in zip(problems, outputs)
               for sample in completions if sample.text.strip()]  # an empty one has no step to judge
    labels = grade_many([(text, problem.answer) for problem, text in samples])
    return [{"prompt": problem.prompt, "completion": text, "label": int(label), "answer": problem.answer}
            for (problem, text), label in zip(samples, labels)]


def toy_prm_data(policy: str | Path, spec: ToyPRMDataSpec = ToyPRMDataSpec()) -> tuple[Path, Path]:
    """Paths of the cached ``train.jsonl`` and ``eval.jsonl`` (prompt, completion, label, answer)
    sampled from ``policy``; drawn on first use (under a file lock, written atomically)."""
    from primekit import toy  # loads torch: imported on use

    policy = str(policy)
    directory = cache_dir() / "toy" / f"prm-data-{spec.key(policy)}"
    train_path, eval_path = directory / "train.jsonl", directory / "eval.jsonl"
    if eval_path.exists():
        return train_path, eval_path
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits for the first one's samples
        if not eval_path.exists():
            train = toy.train_problems()[:spec.num_train_problems]
            atomic_write_jsonl(train_path, _sample_and_grade(policy, train, spec, spec.seed))
            held_out = toy.test_problems(spec.num_eval_problems)
            atomic_write_jsonl(eval_path, _sample_and_grade(policy, held_out, spec, spec.seed + 1))
    return train_path, eval_path


def ensure_toy_prm() -> Path:
    """The folder of the toy implicit PRM (what ``prime-prm train`` without options saves),
    trained with the default options first when it holds no PRM yet."""
    path = Path(TOY_PRM)
    if not (path / RECORD_FILE).is_file():
        # torch and the PRM trainer load only when the toy PRM has to be trained (and prm.training
        # imports this module: a module-level import would be a cycle)
        from primekit.prm.training import train_prm

        logger.warning("no toy PRM in %s yet: training it once (prime-prm train)", path)
        train_prm(ImplicitPRMConfig(output_dir=TOY_PRM), PRMModelConfig())
    return path
