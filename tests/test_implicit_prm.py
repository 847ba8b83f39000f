"""Implicit PRM read-out: hand-computed rewards, padding independence, step mapping, LoRA reference."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from primekit import toy
from primekit.errors import InputError
from primekit.prm.data import encode_response, join_right_padded
from primekit.prm.implicit import ImplicitPRM, logprobs_to_token_rewards, response_logprobs
from primekit.prm.reading import separator_spans, sum_by_step, token_steps, write_prm_record

PROMPTS = ["Compute 37+58-19\n", "Compute 5+4\n", "Compute 90-9-1\n"]
RESPONSES = ["37+58=95\n95-19=76\n\\boxed{76}", "\\boxed{9}", "90-9=81\n81-1=80\n\\boxed{80}"]


class FixedLogitsLM(torch.nn.Module):
    """A causal LM whose next-token logits at position t are ``table[t]``, whatever the input."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, use_cache=False):
        logits = self.table[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


def test_reward_readout_matches_hand_computed_example():
    # Vocabulary {0, 1, 2}; sequence = prompt [0] + response [1, 2].
    # PRM: position 0 predicts with p = (1/2, 1/4, 1/4), position 1 with p = (1/8, 1/8, 3/4).
    # Reference: uniform logits, p = 1/3 for every token.
    #   r_1 = beta * (log 1/4 - log 1/3) = 0.5 * log(3/4) = -0.1438410...
    #   r_2 = beta * (log 3/4 - log 1/3) = 0.5 * log(9/4) =  0.4054651...
    #   sequence reward = 0.5 * log(27/16) = 0.2616240...
    prm = FixedLogitsLM(torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.125, 0.125, 0.75], [1 / 3] * 3])))
    ref = FixedLogitsLM(torch.zeros(3, 3))
    input_ids = torch.tensor([[0, 1, 2]])
    attention_mask = torch.ones_like(input_ids)
    response_mask = torch.tensor([[0, 1, 1]])
    prm_logps = response_logprobs(prm, input_ids, attention_mask, response_mask)
    ref_logps = response_logprobs(ref, input_ids, attention_mask, response_mask)
    assert torch.allclose(prm_logps, torch.tensor([[0.0, math.log(1 / 4), math.log(3 / 4)]]))
    rewards = logprobs_to_token_rewards(prm_logps, ref_logps, response_mask, coef=0.5)
    expected = torch.tensor([[0.0, 0.5 * math.log(3 / 4), 0.5 * math.log(9 / 4)]])
    assert torch.allclose(rewards, expected, atol=1e-6)
    assert abs(float(rewards.sum()) - 0.5 * math.log(27 / 16)) < 1e-6


def test_token_rewards_ignore_padding_garbage():
    prm = torch.tensor([[-1.0, -2.0, float("-inf")]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    # coef 0.1: 0.1 * (-1 + 1.5) = 0.05 ; 0.1 * (-2 + 1) = -0.1 ; padding -> 0, not nan
    rewards = logprobs_to_token_rewards(prm, ref, torch.tensor([[1, 1, 0]]), coef=0.1)
    assert torch.allclose(rewards, torch.tensor([[0.05, -0.1, 0.0]]))
    with pytest.raises(ValueError):
        logprobs_to_token_rewards(prm, ref[:, :2], torch.ones(1, 3), coef=0.1)


def _naive_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1 from one unpadded full forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_response_logprobs_match_unpadded_forward(padding_side):
    model = toy.random_model(3).eval()
    tokenizer = toy.build_tokenizer()
    encoded = [encode_response(tokenizer, p, r, append_eos=True) for p, r in zip(PROMPTS, RESPONSES)]
    batch = join_right_padded([e.prompt_ids for e in encoded], [e.response_ids for e in encoded],
                              tokenizer.pad_token_id)
    if padding_side == "left":  # roll each row's padding to the front
        for key in batch:
            for row in range(len(encoded)):
                batch[key][row] = torch.roll(batch[key][row], int((batch["attention_mask"][row] == 0).sum()))
    with torch.no_grad():
        logps = response_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    for row, item in enumerate(encoded):
        expected = _naive_logprobs(model, item.prompt_ids + item.response_ids)[-len(item.response_ids):]
        got = logps[row][batch["completion_mask"][row].bool()]
        assert torch.allclose(got, expected, atol=2e-5)
    assert (logps[batch["completion_mask"] == 0] == 0).all()


def test_response_logprobs_pass_gradients():
    model = toy.random_model(0)
    ids = torch.tensor([[5, 6, 7, 8]])
    logps = response_logprobs(model, ids, torch.ones_like(ids), torch.tensor([[0, 0, 1, 1]]))
    logps.sum().backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_batched_scores_do_not_depend_on_batch_size_or_order():
    tokenizer = toy.build_tokenizer()
    one = ImplicitPRM(toy.random_model(1), toy.random_model(2), tokenizer, coef=0.05, batch_size=1)
    many = ImplicitPRM(toy.random_model(1), toy.random_model(2), tokenizer, coef=0.05, batch_size=3)
    singles = one.token_rewards(PROMPTS, RESPONSES)
    batched = many.token_rewards(PROMPTS, RESPONSES)
    for single, joint, prompt, response in zip(singles, batched, PROMPTS, RESPONSES):
        n_tokens = len(encode_response(tokenizer, prompt, response, append_eos=True).response_ids)
        assert single.shape == joint.shape == (n_tokens,)
        assert torch.allclose(single, joint, atol=1e-6)
    results = many.rewards(PROMPTS, RESPONSES)
    for result in results:  # the step rewards partition the sequence reward
        assert abs(sum(result.step_rewards) - result.sequence_reward) < 1e-5
    assert [len(r.step_rewards) for r in results] == [3, 1, 3]
    scores = many.score(PROMPTS, RESPONSES, aggregate="min_step")
    assert scores == pytest.approx([min(r.step_rewards) for r in results])
    # min_q is the minimum of the running sums: Q_1 = r_1, Q_2 = r_1 + r_2, ...
    for score, result in zip(many.score(PROMPTS, RESPONSES, aggregate="min_q"), results):
        r = result.step_rewards
        assert score == pytest.approx(min(r[0], r[0] + r[1], r[0] + r[1] + r[2]) if len(r) == 3 else r[0])
    with pytest.raises(InputError, match="unknown aggregate 'max'"):
        many.score(PROMPTS, RESPONSES, aggregate="max")


def test_completion_logratios_for_trl_layout():
    # TRL keeps left-padded prompts and right-padded completions; q must equal the per-row read-out.
    tokenizer = toy.build_tokenizer()
    reader = ImplicitPRM(toy.random_model(1), toy.random_model(2), tokenizer, coef=1.0)
    prompts = tokenizer(PROMPTS[:2], padding=True, padding_side="left", add_special_tokens=False,
                        return_tensors="pt")
    completions = tokenizer(RESPONSES[:2], padding=True, padding_side="right", add_special_tokens=False,
                            return_tensors="pt")
    q = reader.completion_logratios(prompts["input_ids"], prompts["attention_mask"],
                                    completions["input_ids"], completions["attention_mask"])
    reader.append_eos = False
    for row, expected in enumerate(reader.token_rewards(PROMPTS[:2], RESPONSES[:2])):
        length = int(completions["attention_mask"][row].sum())
        assert torch.allclose(q[row, :length], expected, atol=2e-5)
        assert (q[row, length:] == 0).all()


def test_lora_shared_reference_equals_separate_reference_copy():
    tokenizer = toy.build_tokenizer()
    base = toy.random_model(0)
    reference_copy = copy.deepcopy(base)
    torch.manual_seed(0)
    # init_lora_weights=False gives the adapter a non-zero B, so the PRM differs from its base.
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    shared = ImplicitPRM(lora, None, tokenizer, coef=0.05).token_rewards(PROMPTS, RESPONSES)
    separate = ImplicitPRM(lora, reference_copy, tokenizer, coef=0.05).token_rewards(PROMPTS, RESPONSES)
    for a, b in zip(shared, separate):
        assert torch.allclose(a, b, atol=1e-5)
    assert max(float(a.abs().max()) for a in shared) > 1e-3  # the adapter does change the model


def test_reference_is_required_without_lora():
    with pytest.raises(ValueError):
        ImplicitPRM(toy.random_model(0), None, toy.build_tokenizer())


# -- steps --------------------------------------------------------------------------------------


def test_separator_spans_hand_examples():
    assert separator_spans("ab\ncd\nef", "\n") == [(0, 3), (3, 6), (6, 8)]
    # blank line joins the step before it; a trailing separator makes no empty step
    assert separator_spans("a\n\nb\n", "\n") == [(0, 3), (3, 5)]
    assert separator_spans("\n\nab\ncd", "\n") == [(0, 5), (5, 7)]  # leading blank lines join the first step
    assert separator_spans("no separator", "\n") == [(0, 12)]
    assert separator_spans("", "\n") == [(0, 0)]
    # multi-character separator: "x\ny\n\nz" splits after "\n\n" only
    assert separator_spans("x\ny\n\nz", "\n\n") == [(0, 5), (5, 6)]
    with pytest.raises(ValueError):
        separator_spans("x", "")


def test_token_steps_use_last_character_and_zero_width_tokens_follow():
    spans = [(0, 3), (3, 6)]  # "ab\n" "cd\n"
    # tokens: "ab" (0,2) -> 0 ; ".\n" style token (1,3) ends in step 0 ; "\nc" (2,4) ends in step 1 ;
    # "d" (4,5) -> 1 ; zero-width EOS (6,6) -> joins the previous token's step 1
    assert token_steps([(0, 2), (1, 3), (2, 4), (4, 5), (6, 6)], spans) == [0, 0, 1, 1, 1]
    assert sum_by_step([0.5, -1.0, 2.0, 0.25, 1.0], [0, 0, 1, 1, 1], 2) == [-0.5, 3.25]
    with pytest.raises(ValueError):
        sum_by_step([1.0], [0, 0], 1)


def _byte_level_bpe() -> PreTrainedTokenizerFast:
    """A small byte-level BPE trained on step-by-step text, so merges such as '.\\n\\n' exist."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    text = ["First add the numbers.\n\nThen subtract one.\n\nSo the answer is 7.\n\n"] * 50
    core.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>")


def test_steps_with_bpe_tokens_and_multi_character_separator():
    tokenizer = _byte_level_bpe()
    response = "First add the numbers.\n\nThen subtract one.\n\nSo the answer is 7."
    encoded = encode_response(tokenizer, "Q: ", response, append_eos=True)
    pieces = [response[s:e] for s, e in encoded.offsets[:-1]]
    assert "".join(pieces) == response
    assert any("\n\n" in piece and len(piece) > 2 for piece in pieces)  # a token fuses text and separator
    spans = separator_spans(response, "\n\n")
    steps = token_steps(encoded.offsets, spans)
    # every token is in the step that holds its text; the EOS joins the last step
    for (start, end), step in zip(encoded.offsets[:-1], steps):
        assert spans[step][0] <= end - 1 < spans[step][1]
    assert steps[-1] == 2 and sorted(set(steps)) == [0, 1, 2]


# -- loading ------------------------------------------------------------------------------------


def _save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_from_pretrained_full_model_needs_a_reference(tmp_path):
    tokenizer = toy.build_tokenizer()
    prm_dir = _save(toy.random_model(1), tokenizer, tmp_path / "prm")
    ref_dir = _save(toy.random_model(2), tokenizer, tmp_path / "ref")
    with pytest.raises(InputError, match="reference"):
        ImplicitPRM.from_pretrained(prm_dir, device="cpu")
    explicit = ImplicitPRM.from_pretrained(prm_dir, ref_dir, coef=0.1, device="cpu")
    write_prm_record(prm_dir, base=str(ref_dir), reference=str(ref_dir), beta=0.1, step_mode="newline")
    recorded = ImplicitPRM.from_pretrained(prm_dir, device="cpu")
    assert (recorded.coef, recorded.step_mode, recorded.append_eos) == (0.1, "newline", True)
    assert torch.allclose(explicit.token_rewards(PROMPTS, RESPONSES)[0],
                          recorded.token_rewards(PROMPTS, RESPONSES)[0])


def test_from_pretrained_lora_adapter_shares_its_base(tmp_path):
    tokenizer = toy.build_tokenizer()
    base_dir = _save(toy.random_model(0), tokenizer, tmp_path / "base")
    torch.manual_seed(0)
    lora = get_peft_model(toy.random_model(0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                          init_lora_weights=False))
    lora.peft_config["default"].base_model_name_or_path = str(base_dir)
    lora.save_pretrained(tmp_path / "adapter")
    reader = ImplicitPRM.from_pretrained(tmp_path / "adapter", device="cpu")
    assert reader.ref is None
    in_memory = ImplicitPRM(lora, None, tokenizer).token_rewards(PROMPTS, RESPONSES)
    for a, b in zip(reader.token_rewards(PROMPTS, RESPONSES), in_memory):
        assert torch.allclose(a, b, atol=1e-5)
