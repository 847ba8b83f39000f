"""A 26-token tokenizer for the toy task, built locally with ``tokenizers``.

Every symbol the task uses is one token, so step boundaries (``\\n``) are single tokens and the
model's job is arithmetic, not spelling.

It is written in the form every Qwen2 loader understands: a byte-level BPE (the symbols spelled in
the byte-level alphabet, ``" "`` as ``Ġ`` and ``"\\n"`` as ``Ċ``) with no merges, and the two words
``Compute`` and ``\\boxed{`` as added tokens. Next to a Qwen2 config, ``AutoTokenizer`` (and so
vLLM) rebuilds any tokenizer as Qwen2's byte-level BPE from the saved vocabulary and merges; for
this one that rebuild is the same tokenizer, so every loader gives the same ids and decodes
spaces and newlines. (A word-level tokenizer, this file's earlier form, lost its spaces and
newlines that way.) The only difference between loaders: a character outside the toy alphabet
becomes ``<unk>`` here and is dropped by the rebuilt one.
"""

from __future__ import annotations

import hashlib

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]
WORDS = ["Compute", "\\boxed{"]
SYMBOLS = list("0123456789") + ["+", "-", "*", "=", "(", ")", " ", "{", "}", "\n"]
VOCAB = SPECIAL_TOKENS + WORDS + SYMBOLS

# Plain-text chat template: the toy vocabulary has no role markers, so a conversation is its
# messages' contents, one after another (what a user prompt needs for `apply_chat_template`).
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def _spelled(symbol: str) -> str:
    """``symbol`` in the byte-level alphabet (GPT-2's byte -> character table)."""
    alphabet = bytes_to_unicode()
    return "".join(alphabet[byte] for byte in symbol.encode("utf-8"))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer: 26 tokens, left padding, nothing added automatically around a text."""
    vocab = {token if token in SPECIAL_TOKENS + WORDS else _spelled(token): index
             for index, token in enumerate(VOCAB)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=True))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(token, special=True, normalized=False)
                             for token in SPECIAL_TOKENS])
    core.add_tokens([AddedToken(word, normalized=False) for word in WORDS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>",
        eos_token="<eos>", padding_side="left", clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tokenizer_fingerprint() -> str:
    """A short hash of the serialised tokenizer: part of the toy policy's cache key, so a policy
    saved with another tokenizer is never reused."""
    return hashlib.sha256(build_tokenizer().backend_tokenizer.to_str().encode()).hexdigest()[:12]
