"""A word-level tokenizer for the toy task, built locally with ``tokenizers``.

Every symbol the task uses is one token, so step boundaries (``\\n``) are single tokens and the
model's job is arithmetic, not spelling. It is wrapped as a ``PreTrainedTokenizerFast`` and saved
with a ``tokenizer_config.json`` naming that class: ``AutoTokenizer`` would otherwise swap Qwen2's
byte-level pipeline in next to a Qwen2 config and silently drop spaces and newlines.
"""

from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
WORDS = ["Compute", "\\boxed{"]
SYMBOLS = list("0123456789") + ["+", "-", "*", "=", "(", ")", " ", "{", "}", "\n"]
VOCAB = SPECIAL_TOKENS + WORDS + SYMBOLS

# Plain-text chat template: the toy vocabulary has no role markers, so a conversation is its
# messages' contents, one after another (what a user prompt needs for `apply_chat_template`).
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer: 26 tokens, left padding, nothing added automatically around a text."""
    vocab = {token: index for index, token in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    alternatives = "|".join(re.escape(token) for token in WORDS + SYMBOLS)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(alternatives), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>", padding_side="left", clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
