"""Step splitting, aggregation and the three model-backed scorers on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2ForSequenceClassification, Qwen2ForTokenClassification

from primekit import toy
from primekit.bon import scorers
from primekit.errors import InputError
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.reading import Query

CONTEXT = "Compute 1+2+4\n"
QUERY = Query(CONTEXT)
RESPONSE = "1+2=3\n3+4=7\n\\boxed{7}"


# ----------------------------------------------------------------------------------------------
# vote weights


def test_vote_weight_transforms():
    assert scorers.sigmoid(0.0) == 0.5
    assert scorers.sigmoid(math.log(3)) == pytest.approx(0.75)  # 3 / (1 + 3)
    assert scorers.sigmoid(-1000.0) == 0.0 and scorers.sigmoid(1000.0) == 1.0
    assert scorers.VoteWeight("sum", "sigmoid").apply(math.log(3)) == pytest.approx(0.75)
    assert scorers.VoteWeight("last", "raw").apply(-2.5) == -2.5


# ----------------------------------------------------------------------------------------------
# model-backed scorers


@pytest.fixture(scope="module")
def tokenizer():
    return toy.build_tokenizer()


def _tiny(model_class, **config):
    torch.manual_seed(0)
    model = model_class(toy.tiny_qwen2_config().__class__(**{**toy.tiny_qwen2_config().to_dict(),
                                                            **config}))
    return model.eval()


def _no_bos_toy_tokenizer():
    tokenizer = toy.build_tokenizer()
    tokenizer.bos_token = None
    return tokenizer


def _ids(tokenizer, *pieces):
    """The id of each piece, every piece one token of the toy vocabulary."""
    ids = [tokenizer(piece, add_special_tokens=False)["input_ids"] for piece in pieces]
    assert all(len(one) == 1 for one in ids), pieces
    return [one[0] for one in ids]


@pytest.mark.parametrize("with_bos", [True, False])
@pytest.mark.parametrize("separator", ["\n", "\n\n"])
def test_trl_prm_layout_by_hand(with_bos, separator):
    tokenizer = toy.build_tokenizer() if with_bos else _no_bos_toy_tokenizer()
    ids, positions = scorers.trl_prm_input(tokenizer, "Compute 1+2\n", ["1+2=3", "\\boxed{3}"], separator)
    # BOS (when the tokenizer has one), the raw prompt, then each step followed by the separator
    sep = ["\n"] * len(separator)
    expected = (["<bos>"] if with_bos else []) + ["Compute", " ", "1", "+", "2", "\n"] \
        + ["1", "+", "2", "=", "3", *sep] + ["\\boxed{", "3", "}", *sep]
    assert ids == _ids(tokenizer, *expected)
    # a step's label sits on the last separator token
    first_end = (1 if with_bos else 0) + 6 + 5 + len(sep) - 1
    assert positions == [first_end, first_end + 3 + len(sep)]
    assert [ids[p] for p in positions] == _ids(tokenizer, "\n", "\n")


def test_token_classification_prm_reads_each_step_end(tokenizer):
    model = _tiny(Qwen2ForTokenClassification, num_labels=2)
    scorer = scorers.TokenClassificationPRMScorer(lambda: (model, tokenizer), {"test": 1},
                                                  step_mode="newline", batch_size=4)
    ids, positions = scorer._row(tokenizer, QUERY, RESPONSE)
    # BOS + problem "Compute 1+2+4\n" (8 tokens) = 9; steps "1+2=3", "3+4=7", "\boxed{7}" stripped
    # of their newline and followed by the separator: 6, 6 and 4 tokens. Ends: 14, 20, 24.
    assert positions == [14, 20, 24] and len(ids) == 25
    assert ids[0] == tokenizer.bos_token_id
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0, :, 1]
    expected = [float(probs[p]) for p in positions]
    # batched with a shorter response (right padding) the scores do not change
    got = scorer.step_scores([QUERY, QUERY], [RESPONSE, "\\boxed{7}"])
    assert got[0] == pytest.approx(expected, abs=1e-5)
    assert len(got[1]) == 1
    # its step scores are values: min_q is the weakest step, last the final one
    assert scorer.aggregate(got[0], "min_q") == min(got[0]) and scorer.aggregate(got[0], "last") == got[0][-1]


def test_token_classification_label_outside_the_head_is_an_input_error(tokenizer):
    model = _tiny(Qwen2ForTokenClassification, num_labels=2)
    scorer = scorers.TokenClassificationPRMScorer(lambda: (model, tokenizer), {}, positive_label=2)
    with pytest.raises(InputError):
        scorer.step_scores([QUERY], [RESPONSE])


def _bos_adding_toy_tokenizer():
    """The toy tokenizer with a post-processor that puts <bos> first, like Llama's."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = toy.build_tokenizer()
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)])
    return tokenizer


@pytest.mark.parametrize("adds_bos", [True, False])
def test_trl_reward_layout_by_hand(adds_bos):
    tokenizer = _bos_adding_toy_tokenizer() if adds_bos else toy.build_tokenizer()
    ids = scorers.trl_reward_input(tokenizer, "Compute 1+2\n", "\\boxed{3}")
    # prompt + response + EOS, tokenized with the tokenizer's own special tokens
    expected = (["<bos>"] if adds_bos else []) + ["Compute", " ", "1", "+", "2", "\n", "\\boxed{", "3", "}", "<eos>"]
    assert ids == _ids(tokenizer, *expected)
    # an EOS already there is not doubled; a conversation goes through the chat template
    assert scorers.trl_reward_input(tokenizer, "Compute 1+2\n", "\\boxed{3}<eos>") == ids
    conversation = scorers.trl_reward_input(tokenizer, [{"role": "user", "content": "Compute 1+2\n"}], "\\boxed{3}")
    assert conversation == _ids(tokenizer, "Compute", " ", "1", "+", "2", "\n", "\\boxed{", "3", "}")


def test_sequence_classification_orm_scores_the_eos(tokenizer):
    model = _tiny(Qwen2ForSequenceClassification, num_labels=1)
    scorer = scorers.SequenceClassificationORMScorer(lambda: (model, tokenizer), {}, num_labels=1,
                                                     prm_context="prompt", batch_size=2)
    assert scorer.vote_weight.transform == "sigmoid"
    ids = tokenizer(CONTEXT + RESPONSE, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        expected = float(model(input_ids=torch.tensor([ids])).logits[0, 0])
    query = Query("Compute 1+2+4", prompt=CONTEXT)
    got = scorer.step_scores([query, query], [RESPONSE, "\\boxed{7}"])
    assert got[0] == pytest.approx([expected], abs=1e-5)


@pytest.fixture(scope="module")
def implicit_prm(tokenizer):
    return ImplicitPRM(toy.random_model(1), toy.random_model(2), tokenizer, coef=0.05, batch_size=2)


def test_implicit_scorer_sums_token_rewards_per_step(implicit_prm):
    scorer = scorers.ImplicitPRMScorer(lambda: implicit_prm, {"test": 1}, step_mode="newline")
    responses = [RESPONSE, "\\boxed{9}", "1+2=3\n\n3+4=7\n\\boxed{7}"]
    got = scorer.step_scores([QUERY] * 3, responses)
    # the scorer reads the problem as a user message (the toy template: the text itself)
    assert got == [pytest.approx(row, abs=1e-6)
                   for row in implicit_prm.step_rewards([CONTEXT] * 3, responses, step_mode="newline")]
    # the steps partition the tokens: their sum is the sequence reward (the EOS counts too)
    for row, tokens in zip(got, implicit_prm.token_rewards([CONTEXT] * 3, responses)):
        assert sum(row) == pytest.approx(float(tokens.sum()), abs=1e-6)
    q = [got[0][0], got[0][0] + got[0][1], sum(got[0])]
    assert scorer.aggregate(got[0], "last") == pytest.approx(sum(got[0]))
    assert scorer.aggregate(got[0], "min_step") == min(got[0])
    assert scorer.aggregate(got[0], "min_q") == pytest.approx(min(q))
    assert scorer.aggregate(got[0], "sum_q") == pytest.approx(sum(q))
    # the vote follows the ranking aggregation (one weighted vote per aggregate)
    assert scorer.vote_weight.aggregate is None and scorer.vote_weight.transform == "sigmoid"


def test_implicit_scorer_context(implicit_prm):
    chat = scorers.ImplicitPRMScorer(lambda: implicit_prm, {}, step_mode="newline")
    policy = scorers.ImplicitPRMScorer(lambda: implicit_prm, {}, step_mode="newline", prm_context="prompt")
    query = Query("Compute 1+2+4", prompt="Compute 1+2+4\n")
    # chat reads the problem through the PRM's chat template, prompt reads the policy's prompt
    assert chat.step_scores([query], [RESPONSE]) == [pytest.approx(
        implicit_prm.step_rewards(["Compute 1+2+4"], [RESPONSE], "newline")[0])]
    assert policy.step_scores([query], [RESPONSE]) == [pytest.approx(
        implicit_prm.step_rewards([CONTEXT], [RESPONSE], "newline")[0])]
    assert chat.identity() != policy.identity()
    with pytest.raises(InputError, match="needs the policy's prompt"):
        policy.step_scores([Query("Compute 1")], [RESPONSE])


def test_model_fingerprint_changes_when_weights_change(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = scorers.model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"123")
    assert scorers.model_fingerprint(tmp_path) != first
    assert scorers.model_fingerprint("org/name") == "org/name"
