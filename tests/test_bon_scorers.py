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

CONTEXT = "Compute 1+2+4\n"
RESPONSE = "1+2=3\n3+4=7\n\\boxed{7}"


# ----------------------------------------------------------------------------------------------
# steps


def test_step_markers_split_before_each_marker_and_keep_the_preamble():
    text = "Step 1: a\nStep 2: b"
    # "Step 1: a\n" is 10 characters, "Step 2: b" 9 more
    assert scorers.step_spans(text) == [(0, 10), (10, 19)]
    with_preamble = "Let's solve.\nStep 1: x\n**Step 2:** y"
    # "Let's solve.\n" is 13 characters and "Step 1: x\n" 10, so step 2 starts at 23 and runs
    # 2 + 7 + 2 + 2 = 13 characters ("**", "Step 2:", "**", " y") to 36; the preamble joins step 1
    assert scorers.step_spans(with_preamble) == [(0, 23), (23, 36)]


def test_fallback_to_blank_lines_then_newlines():
    assert scorers.split_steps("a\n\nb\n\nc") == ["a\n\n", "b\n\n", "c"]
    assert scorers.split_steps("a\nb") == ["a\n", "b"]
    # a single "Step 1:" is no step structure: newlines decide
    assert scorers.split_steps("Step 1: a\nb") == ["Step 1: a\n", "b"]
    assert scorers.split_steps("abc") == ["abc"]
    # a forced mode does not fall back
    assert scorers.split_steps("a\n\nb\nc", mode="blank_lines") == ["a\n\n", "b\nc"]
    assert scorers.split_steps("a\n\nb\nc", mode="newlines") == ["a\n\n", "b\n", "c"]


@pytest.mark.parametrize("text", ["Step 1: x\n\nStep 2: y\n", "a\n\n\nb\n", "\n\nx\ny", "", "q"])
def test_steps_cover_the_text_exactly(text):
    assert "".join(scorers.split_steps(text)) == text


def test_unknown_step_mode_is_an_input_error():
    with pytest.raises(InputError):
        scorers.step_spans("a", mode="sentences")


# ----------------------------------------------------------------------------------------------
# aggregation and vote weights


def test_aggregate_scores_by_hand():
    steps = [0.9, 0.2, 0.7]
    assert scorers.aggregate_scores(steps, "min") == 0.2
    assert scorers.aggregate_scores(steps, "last") == 0.7
    assert scorers.aggregate_scores(steps, "mean") == pytest.approx(0.6)  # 1.8 / 3
    assert scorers.aggregate_scores(steps, "sum") == pytest.approx(1.8)
    with pytest.raises(InputError):
        scorers.aggregate_scores(steps, "max")


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


def test_token_classification_prm_reads_each_step_end(tokenizer):
    model = _tiny(Qwen2ForTokenClassification, num_labels=2)
    scorer = scorers.TokenClassificationPRMScorer(lambda: (model, tokenizer), {"test": 1},
                                                  step_mode="newlines", batch_size=4)
    ids, positions = scorer._row(tokenizer, CONTEXT, RESPONSE)
    # context: Compute, space, 1 + 2 + 4, newline = 8 tokens; "1+2=3\n" and "3+4=7\n" are 6 tokens
    # each; the last step "\boxed{" 7 } gets the separator appended: 4 tokens. Ends: 13, 19, 23.
    assert positions == [13, 19, 23] and len(ids) == 24
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0, :, 1]
    expected = [float(probs[p]) for p in positions]
    # batched with a shorter response (right padding) the scores do not change
    got = scorer.step_scores([CONTEXT, CONTEXT], [RESPONSE, "\\boxed{7}"])
    assert got[0] == pytest.approx(expected, abs=1e-5)
    assert len(got[1]) == 1


def test_token_classification_label_outside_the_head_is_an_input_error(tokenizer):
    model = _tiny(Qwen2ForTokenClassification, num_labels=2)
    scorer = scorers.TokenClassificationPRMScorer(lambda: (model, tokenizer), {}, positive_label=2)
    with pytest.raises(InputError):
        scorer.step_scores([CONTEXT], [RESPONSE])


def test_sequence_classification_orm_scores_the_last_token(tokenizer):
    model = _tiny(Qwen2ForSequenceClassification, num_labels=1)
    scorer = scorers.SequenceClassificationORMScorer(lambda: (model, tokenizer), {}, num_labels=1,
                                                     batch_size=2)
    assert scorer.vote_weight.transform == "sigmoid"
    ids = tokenizer(CONTEXT + RESPONSE, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        expected = float(model(input_ids=torch.tensor([ids])).logits[0, 0])
    got = scorer.step_scores([CONTEXT, CONTEXT], [RESPONSE, "\\boxed{7}"])
    assert got[0] == pytest.approx([expected], abs=1e-5)


@pytest.fixture(scope="module")
def implicit_prm(tokenizer):
    return ImplicitPRM(toy.random_model(1), toy.random_model(2), tokenizer, beta=0.05, batch_size=2)


def test_implicit_scorer_sums_token_rewards_per_step(implicit_prm):
    scorer = scorers.ImplicitPRMScorer(lambda: implicit_prm, {"test": 1}, step_mode="newlines")
    responses = [RESPONSE, "\\boxed{9}", "1+2=3\n\n3+4=7\n\\boxed{7}"]
    got = scorer.step_scores([CONTEXT] * 3, responses)
    # newline steps are what ImplicitPRM.step_rewards cuts with separator "\n"
    assert got == [pytest.approx(row, abs=1e-6) for row in implicit_prm.step_rewards([CONTEXT] * 3, responses)]
    # the steps partition the tokens: their sum is the sequence reward (the EOS counts too)
    for row, tokens in zip(got, implicit_prm.token_rewards([CONTEXT] * 3, responses)):
        assert sum(row) == pytest.approx(float(tokens.sum()), abs=1e-6)
    # "last" and "sum" rank by the sequence reward, "min" by the weakest step
    assert scorer.aggregate(got[0], "last") == pytest.approx(sum(got[0]))
    assert scorer.aggregate(got[0], "min") == min(got[0])


def test_implicit_scorer_takes_chat_messages(implicit_prm):
    scorer = scorers.ImplicitPRMScorer(lambda: implicit_prm, {}, step_mode="newlines")
    as_text = scorer.step_scores([CONTEXT], [RESPONSE])
    # the toy chat template concatenates message contents, so a user message reads the same
    as_messages = scorer.step_scores([[{"role": "user", "content": CONTEXT}]], [RESPONSE])
    assert as_messages == [pytest.approx(as_text[0])]


def test_model_fingerprint_changes_when_weights_change(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = scorers.model_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"123")
    assert scorers.model_fingerprint(tmp_path) != first
    assert scorers.model_fingerprint("org/name") == "org/name"
