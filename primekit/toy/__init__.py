"""The embedded toy world: a real (tiny) instance of the PRIME setting that runs on a CPU.

An arithmetic task with step-by-step solutions, a locally built tokenizer, a tiny
``Qwen2ForCausalLM`` and a policy warmed up with TRL's ``SFTTrainer``. Every command defaults to it
and every test runs on it; the toy policy is just a local model path.
"""

from primekit.toy.model import random_model, tiny_qwen2_config
from primekit.toy.sft import DEFAULT_WARMUP, WORLDS, WarmupSpec, policy_path, test_problems, train_problems
from primekit.toy.task import Problem, TaskSpec, make_problems
from primekit.toy.tokenizer import build_tokenizer

__all__ = ["DEFAULT_WARMUP", "WORLDS", "Problem", "TaskSpec", "WarmupSpec", "build_tokenizer", "make_problems",
           "policy_path", "random_model", "test_problems", "tiny_qwen2_config", "train_problems"]
