"""Scoring throughput of Best-of-N reranking: candidates sorted by length vs in file order.

Real response lengths come from the shipped Qwen best-of-8 set (MATH CoT responses of a few
hundred to a few thousand characters). The scorer is the implicit PRM reader
(:class:`primekit.prm.implicit.ImplicitPRM`: a PRM and a reference forward pass per batch) on a
randomly initialised small Qwen2 with a byte-level BPE tokenizer trained on those responses, on
CPU; the weights do not matter for speed, the shapes do. Both orders go through
``primekit.bon.rerank.score_problems`` with the same batch size, so the only difference is which
candidates share a batch (and so how much padding each batch carries).

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/bon_throughput.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from primekit.bon.data import load_problems
from primekit.bon.rerank import score_problems
from primekit.bon.scorers import ImplicitPRMScorer
from primekit.io import atomic_write_text
from primekit.paths import data_dir
from primekit.prm.implicit import ImplicitPRM

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/bon_throughput.py"
NUM_PROBLEMS, BATCH_SIZE, THREADS, REPEATS = 100, 16, 2, 2


def byte_level_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2048, special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # the problem as is
    return tokenizer


def small_qwen2(vocab_size: int, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
                         max_position_embeddings=4096, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).eval()


def padding_efficiency(lengths: list[int], batch_size: int) -> float:
    """Real tokens / tokens computed when ``lengths`` are batched in this order (each batch padded
    to its longest row)."""
    padded = sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size])
                 for i in range(0, len(lengths), batch_size))
    return sum(lengths) / padded


def main() -> int:
    torch.set_num_threads(THREADS)
    source = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"
    problems = load_problems(source)[:NUM_PROBLEMS]
    tokenizer = byte_level_tokenizer([c for p in load_problems(source) for c in p.candidates])
    prm = ImplicitPRM(small_qwen2(len(tokenizer), 1), small_qwen2(len(tokenizer), 2), tokenizer,
                      batch_size=BATCH_SIZE)
    scorer = ImplicitPRMScorer(lambda: prm, {"benchmark": "throughput"}, step_mode="auto")
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # the reader tokenizes context and candidate apart and appends an EOS
    lengths = [count(p.problem) + count(c) + 1 for p in problems for c in p.candidates]
    in_file_order = padding_efficiency(lengths, BATCH_SIZE)
    longest_first = padding_efficiency(sorted(lengths, reverse=True), BATCH_SIZE)
    score_problems(problems[:2], scorer, None, batch_size=BATCH_SIZE)  # warm-up
    seconds = {True: [], False: []}
    for _ in range(REPEATS):
        for sort in (False, True):  # alternate, so drifting machine load hits both alike
            start = time.perf_counter()
            score_problems(problems, scorer, None, batch_size=BATCH_SIZE, sort_by_length=sort)
            seconds[sort].append(time.perf_counter() - start)
    tokens = sum(lengths)
    rate = {sort: tokens / min(times) for sort, times in seconds.items()}
    text = "\n".join([
        "## Best-of-N scoring throughput: length-sorted vs file-order batches", "",
        f"`{COMMAND}`. {len(lengths)} candidates ({NUM_PROBLEMS} problems x 8 of the "
        f"shipped Qwen best-of-8 set, {min(lengths)}-{max(lengths)} tokens, {tokens} in all) "
        f"scored by the implicit PRM reader (PRM + reference forward passes) on a random "
        f"2-layer, 128-wide Qwen2 (the toy model's shape) with a 2048-token byte-level BPE, CPU, "
        f"{THREADS} threads, "
        f"batch {BATCH_SIZE}; best of {REPEATS} alternating runs.", "",
        "| order | real / computed tokens | seconds | tokens/s |",
        "|---|---|---|---|",
        f"| file order | {in_file_order:.2f} | {min(seconds[False]):.1f} | {rate[False]:.0f} |",
        f"| longest first (default) | {longest_first:.2f} | {min(seconds[True]):.1f} | {rate[True]:.0f} |",
        "",
        f"Sorting by length: **{rate[True] / rate[False]:.2f}x** the tokens/s of file order "
        f"(the share of real tokens alone predicts {longest_first / in_file_order:.2f}x; attention "
        "cost grows faster than linearly with the padded length).", ""])
    atomic_write_text(RESULTS / "bon_throughput.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
