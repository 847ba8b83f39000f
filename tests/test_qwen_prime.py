"""A PRIME step on Qwen-shaped policies (Qwen2's real tokenizer from ../shared/data/tokenizers/qwen2,
a 151,936-column head): generation stops at the policy's end token, the answer is graded, and a
cut answer is flagged truncated, whichever of <|im_end|> and <|endoftext|> ends the policy's turns.
The policies are scripted (primekit.toy.qwen_shaped): each writes one known answer and its end
token, so every expected value is known in advance. Also: the prompt-length cap counts a
chat-templated prompt with PRIME's system prompt the same way in the trainer and in
``prime-rl plan``, and as the ids written out by hand."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from primekit.models import load_tokenizer
from primekit.rl.batch import truncated_rows
from primekit.toy import qwen_shaped

ANSWER = "The answer is \\boxed{7}."
QUESTION = "What is 3+4?"


# the Qwen-shaped models: slow (left out of `make test-fast`)
pytestmark = pytest.mark.slow


def policy(eos: str, answer_end: str | None = None) -> str:
    if not (qwen_shaped.tokenizer_dir() / "tokenizer.json").is_file():
        pytest.skip(f"no Qwen2 tokenizer at {qwen_shaped.tokenizer_dir()}")
    return str(qwen_shaped.model_path(eos=eos, answer=ANSWER, answer_end=answer_end))


def one_step_batch(model_dir: str, tmp_path, max_completion_length: int, filter_truncated: bool):
    """PrimeTrainer's output for its first generation batch (TRL's transformers generation at
    temperature 1, the verifier, the filter, the PRM update and scoring), and the trainer. Without
    refills: a filtered-out group keeps its rows, with a zero mask."""
    from primekit.rl.config import PrimeConfig
    from primekit.rl.trainer import PrimeTrainer

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": QUESTION}], "answer": "7"}] * 2)
    config = PrimeConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False,
                         per_device_train_batch_size=4, num_generations=4, oversample_factor=1,
                         max_completion_length=max_completion_length, max_steps=1, logging_steps=1,
                         report_to="none", save_strategy="no", shuffle_dataset=False, seed=0,
                         disable_tqdm=True, filter_accuracy=False, filter_truncated=filter_truncated,
                         max_refill_rounds=0)
    trainer = PrimeTrainer(model=model_dir, args=config, train_dataset=dataset,
                           processing_class=load_tokenizer(model_dir))
    trainer.model.train()
    output = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    return trainer, output


@pytest.mark.parametrize("eos, answer_end", [
    ("<|im_end|>", None),               # an instruct policy ends its turn with <|im_end|>
    ("<|endoftext|>", None),            # a base policy: <|endoftext|> ends and pads
    ("<|im_end|>", "<|endoftext|>"),    # an instruct policy that ends with <|endoftext|>
])
def test_prime_step_stops_and_grades_at_either_end_token(tmp_path, eos, answer_end):
    model_dir = policy(eos, answer_end)
    tokenizer = load_tokenizer(model_dir)
    end_id = tokenizer.convert_tokens_to_ids(answer_end or eos)
    answer_ids = tokenizer.encode(ANSWER, add_special_tokens=False)
    trainer, output = one_step_batch(model_dir, tmp_path, max_completion_length=len(answer_ids) + 4,
                                     filter_truncated=True)
    ids, mask = output["completion_ids"], output["completion_mask"].bool()
    assert ids.shape[0] == 4
    for row, row_mask in zip(ids, mask):
        # the answer and its end token are the response, and nothing after it counts
        assert row[row_mask].tolist() == answer_ids + [end_id]
    assert not truncated_rows(ids, mask.long(), trainer.eos_token_ids).any()
    assert torch.equal(trainer._outcome_rewards.cpu(), torch.ones(4))
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == 0.0
    assert trainer._metrics["train"]["prime/filter/truncated"][-1] == 0.0


def test_prime_step_flags_a_cut_answer_as_truncated(tmp_path):
    model_dir = policy("<|im_end|>")
    tokenizer = load_tokenizer(model_dir)
    answer_ids = tokenizer.encode(ANSWER, add_special_tokens=False)
    cut = len(answer_ids) - 2  # stops inside "\boxed{7}": no end token, no answer
    trainer, output = one_step_batch(model_dir, tmp_path, max_completion_length=cut, filter_truncated=False)
    ids, mask = output["completion_ids"], output["completion_mask"].bool()
    for row, row_mask in zip(ids, mask):
        assert row[row_mask].tolist() == answer_ids[:cut]
    assert truncated_rows(ids, mask.long(), trainer.eos_token_ids).all()
    assert torch.equal(trainer._outcome_rewards.cpu(), torch.zeros(4))
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == 1.0


def test_prompt_length_cap_counts_the_same_tokens_everywhere(qwen_tokenizer):
    from primekit.eval.protocols import eurus_system_prompt
    from primekit.rl.data import PromptFormat, prompt_length
    from primekit.rl.plan.memory import longest_prompt_tokens

    system = eurus_system_prompt()
    prompt = PromptFormat(chat=True, system_prompt=system).render(QUESTION)
    by_hand = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n"
               "<|im_start|>assistant\n")
    expected = len(qwen_tokenizer(by_hand, add_special_tokens=False)["input_ids"])
    # the special tokens are single ids, not spelled out
    assert qwen_tokenizer(by_hand, add_special_tokens=False)["input_ids"].count(151644) == 3
    assert prompt_length(prompt, qwen_tokenizer) == expected
    assert longest_prompt_tokens([prompt], qwen_tokenizer) == expected
    # as text (the chat already rendered), the trainer counts the same ids
    assert prompt_length(by_hand, qwen_tokenizer) == expected
