r"""Final-answer extraction and answer-string normalisation.

Responses state their final answer in many ways: ``\boxed{}`` (possibly several boxes for a
multi-part answer), Minerva's "Final Answer: The final answer is $x$. I hope it is correct.",
"The answer is ...", GSM8K's ``#### 18``, a choice letter, or nothing but a last number.
``extract_answer`` finds that answer in the order the public graders use (Minerva format, then
boxes, then answer phrases, then ``####``, then the last formula or number).

``normalize_answer`` removes presentation that does not change the value (delimiters, units,
``\text{}``, thousands separators, degrees, ``x =``, leading zeros, ...). Equal normal forms mean
equal answers, so most pairs are decided by a string or number comparison and never reach sympy.
Every pattern here runs in linear time and only looks at a bounded window, because responses are
untrusted and may be huge.
"""

from __future__ import annotations

import re

from primekit.verifiers.math.brackets import group_end, split_top_level

__all__ = [
    "extract_answer",
    "normalize_answer",
    "final_answer_part",
    "clean_answer",
    "assigned_name",
    "split_top_level",
]

# Longest answer worth looking at; longer spans are scanning accidents (e.g. an unclosed box).
MAX_ANSWER_CHARS = 2000
# How many trailing boxes / phrases are examined, so adversarial input stays linear.
_MAX_CANDIDATES = 16

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_MINERVA = re.compile(r"final answer is\s*\$", re.IGNORECASE)
_ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer|answer|(?:correct\s+)?(?:option|choice))\b(?:\s*(?:is\b|:))?\s*:?",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(r"\n[ \t]*Problem:|<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>")
_GSM8K = re.compile(r"####\s*([^\n]+)")
_MATH_ENV = re.compile(
    r"\$\$(.{1,1000}?)\$\$|(?<![\\$])\$([^$\n]{1,500}?)(?<!\\)\$|\\\((.{1,500}?)\\\)|\\\[(.{1,1000}?)\\\]",
    re.DOTALL,
)
_ENV_LINK = re.compile(r"\s*(?:,\s*)?(?:and|or|,)\s*")
_NUMBER = re.compile(
    r"-?\\[dt]?frac\{-?\d+(?:\.\d+)?\}\{-?\d+(?:\.\d+)?\}"
    r"|(?<![A-Za-z_\d])-?(?:\d{1,3}(?: \d{3})+(?![\d,.])|\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?"
)
_OPENERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


# ----------------------------------------------------------------------------------------------
# extraction


def _box_at(text: str, command: re.Match) -> tuple[int, int, str] | None:
    r"""(start, end, content) of the box whose command ``command`` matched (``\boxed{x}`` or ``\boxed x``)."""
    i = command.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        end = group_end(text, i, limit=MAX_ANSWER_CHARS)
        if end is None:
            return None
        return command.start(), end, text[i + 1 : end - 1]
    if i == command.end():  # "\boxedx" is another command; "\boxed" must be followed by a space
        return None
    stop = i
    while stop < len(text) and stop - i < 200 and text[stop] not in "$\n":
        stop += 1
    content = text[i:stop].strip().rstrip(".,;")
    return (command.start(), stop, content) if content else None


def _is_connector(gap: str) -> bool:
    """True if the text between two boxes joins them into one multi-part answer ("and", ",")."""
    if len(gap) > 200:
        return False
    gap = re.sub(r"\\(?:text|textbf|textnormal|mbox|mathrm)\s*\{([^{}]*)\}", r" \1 ", gap)
    gap = re.sub(r"\\(?:quad|qquad|[,;:! ]|\(|\)|\[|\])|\$", " ", gap)
    words = re.findall(r"[A-Za-z]+", gap)
    if not words:
        return len(gap.strip()) <= 12 and not re.search(r"\d", gap)
    return bool({"and", "or"} & {w.lower() for w in words}) and len(words) <= 5 and len(gap) <= 60


def _boxed_answer(text: str) -> str | None:
    """Content of the last box, joined with the boxes right before it when they form one answer."""
    commands = list(_BOX.finditer(text, max(0, len(text) - 200 * MAX_ANSWER_CHARS)))
    boxes = []
    for command in reversed(commands[-_MAX_CANDIDATES:]):
        box = _box_at(text, command)
        if box is None:
            continue
        if boxes and box[1] > boxes[-1][0]:  # it encloses the box found before: \boxed{\boxed{4}}
            continue
        boxes.append(box)
    if not boxes:
        return None
    parts = [boxes[0][2]]
    for previous, later in zip(boxes[1:], boxes):
        if not _is_connector(text[previous[1] : later[0]]):
            break
        parts.append(previous[2])
    parts.reverse()
    unique = [p for i, p in enumerate(parts) if p not in parts[:i]]
    return ", ".join(p.strip() for p in unique)


def _math_env_at(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the math environment opening exactly at ``start`` (``\\$`` is not a closer)."""
    for opener, closer in _OPENERS:
        if text.startswith(opener, start):
            begin = close = start + len(opener)
            while True:
                close = text.find(closer, close, begin + MAX_ANSWER_CHARS)
                if close < 0:
                    return None
                if closer.startswith("\\") or text[close - 1] != "\\":
                    return text[begin:close], close + len(closer)
                close += 1
    return None


def _joined_math_envs(tail: str) -> str | None:
    """Math environments at the start of ``tail`` joined by and/or/commas ("$12$ and $13$")."""
    env = _math_env_at(tail, 0)
    if env is None:
        return None
    parts = [env[0]]
    end = env[1]
    while len(parts) < 8:
        link = re.match(r"\s*(?:,\s*)?(?:and|or|,)\s*", tail[end:])
        if not link:
            break
        nxt = _math_env_at(tail, end + link.end())
        if nxt is None:
            break
        parts.append(nxt[0])
        end = nxt[1]
    return ", ".join(p.strip() for p in parts)


def _answer_from_tail(tail: str, explicit: bool) -> str | None:
    """The answer stated right after an answer phrase ("is", ":")."""
    tail = tail.lstrip(" \t*:")
    if tail.startswith("\n") and not explicit:
        return None
    tail = tail.lstrip()
    joined = _joined_math_envs(tail)
    if joined is not None:
        return joined
    if not explicit:
        return None
    sentence = re.split(r"\n|\.(?=\s|$)|\$\.\s", tail[:MAX_ANSWER_CHARS], maxsplit=1)[0]
    sentence = sentence.strip().rstrip(".*").strip()
    # "Final Answer: The largest $n$ is 34" -> "34"
    is_split = re.split(r"\s+is\s+", sentence)
    if len(is_split) > 1 and len(is_split[-1]) < len(sentence):
        sentence = is_split[-1]
        joined = _joined_math_envs(sentence)
        if joined is not None:
            return joined
    if len(re.findall(r"[A-Za-z]{2,}", sentence)) >= 3:
        # "Final Answer: Jane started growing Sphere 3 hours ago" -> "3"
        return _last_formula_or_number(sentence) or sentence
    return sentence or None


def _phrase_answer(text: str) -> str | None:
    """Answer after the last "the answer is" / "Answer:" / "correct option is" phrase."""
    window_start = max(0, len(text) - 50 * MAX_ANSWER_CHARS)
    phrases = list(_ANSWER_PHRASE.finditer(text, window_start))
    for phrase in reversed(phrases[-_MAX_CANDIDATES:]):
        explicit = bool(re.search(r"(?i)(?:\bis|:)\s*:?$", phrase.group()))
        answer = _answer_from_tail(text[phrase.end() : phrase.end() + 2 * MAX_ANSWER_CHARS], explicit)
        if answer:
            return answer
    return None


def _minerva_answer(text: str) -> str | None:
    """The last Minerva-style "final answer is $x$. I hope it is correct." in the text."""
    window_start = max(0, len(text) - 50 * MAX_ANSWER_CHARS)
    for match in reversed(list(_MINERVA.finditer(text, window_start))[-_MAX_CANDIDATES:]):
        close = text.find("$", match.end(), match.end() + MAX_ANSWER_CHARS)
        if close >= 0 and re.match(r"\s*\.?\s*I hope", text[close + 1 : close + 40]):
            return text[match.end() : close].strip()
    return None


def _last_formula_or_number(text: str) -> str | None:
    """The last math environment or number, whichever ends later."""
    window = text[max(0, len(text) - 5 * MAX_ANSWER_CHARS) :]
    envs = list(_MATH_ENV.finditer(window))[-_MAX_CANDIDATES:]
    env = envs[-1] if envs else None
    number = None
    for number in _NUMBER.finditer(window):
        pass
    if env is not None and (number is None or env.end() >= number.end()):
        chain = [env]
        for earlier in reversed(envs[:-1]):
            if len(chain) == 8 or not _ENV_LINK.fullmatch(window[earlier.end() : chain[-1].start()]):
                break
            chain.append(earlier)
        contents = [next(g for g in e.groups() if g is not None).strip() for e in reversed(chain)]
        if all(contents):
            return ", ".join(contents)
    if number is not None:
        return number.group().rstrip(",")
    return None


def extract_answer(text: str) -> str | None:
    r"""The final answer stated in a model response, as written (not normalised); None if none.

    Order: Minerva's "final answer is $x$. I hope", the last ``\boxed{}``/``\fbox{}`` (with
    the boxes just before it when "and"/commas join them), "the answer is ..."/"Answer: ...",
    GSM8K's ``#### x``, then the last formula or number.
    """
    if not text:
        return None
    # A few-shot continuation ("\n\nProblem: ...", a new chat turn) belongs to another problem.
    continuation = _CONTINUATION.search(text)
    if continuation is not None and continuation.start() > 0:
        text = text[: continuation.start()]
    for finder in (_minerva_answer, _boxed_answer, _phrase_answer):
        answer = finder(text)
        if answer:
            return answer.strip()
    gsm8k = None
    for gsm8k in _GSM8K.finditer(text):
        pass
    if gsm8k is not None and gsm8k.group(1).strip():
        return gsm8k.group(1).strip()
    return _last_formula_or_number(text)


def _looks_like_prose(text: str) -> bool:
    """True for a sentence around an answer ("the number is 1,000.99"), False for a bare answer
    ("5 \\text{ cm}", "12 and 13", "x \\in [0, 1]", "\\text{Evelyn}")."""
    if len(text) > 5 * MAX_ANSWER_CHARS:
        return True
    stripped = text.strip()
    env = _math_env_at(stripped, 0)
    if env is not None and env[1] == len(stripped):
        return False
    if _MATH_ENV.search(text):
        return True
    plain = re.sub(r"\\[A-Za-z]+(?:\s*\{[^{}]*\})?", " ", text)
    words = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", plain)} - _MATH_WORDS - _NUMBER_WORDS
    return bool(words) and bool(re.search(r"\d", plain))


def final_answer_part(text: str) -> str:
    r"""``text`` reduced to its answer when it is a response rather than a bare answer.

    Gold answers are usually bare ("$\frac{1}{2}$", "12 and 13") and are kept as they are (no
    last-number guessing); a solution with a box or ``####``, or a sentence around the answer,
    is reduced with ``extract_answer``.
    """
    marked = _BOX.search(text) or "####" in text or _MINERVA.search(text)
    if marked or re.search(r"(?i)\banswer\s*(?:is|:)", text) or _looks_like_prose(text):
        return extract_answer(text) or text
    return text


# ----------------------------------------------------------------------------------------------
# normalisation

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u22c5": "\\cdot ",
    "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ",
    "\u222a": "\\cup ", "\u2229": "\\cap ", "\u221a": "\\sqrt", "\u00b0": "^\\circ", "\u2205": "\\emptyset ",
    "\u00a0": " ",
}
_UNICODE_TABLE = str.maketrans(_UNICODE)
_SUBSTITUTIONS = [
    (re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?:\.|(?![A-Za-z]))"), ""),
    (re.compile(r"\\[dtc]frac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\(?:displaystyle|textstyle)(?![A-Za-z])"), ""),
    (re.compile(r"\{,\}"), ""),  # 10{,}000
    (re.compile(r"(?<=\d),\\!\s*(?=\d{3})"), ""),  # 10,\!000
    (re.compile(r"(?<!\\)\\!"), ""),
    (re.compile(r"(?<!\\)\\(?:[,;: ]|quad|qquad)(?![A-Za-z])|~"), " "),
    (re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])"), ""),
    (re.compile(r"\\(?:neq|ne)(?![A-Za-z])|!="), r"\\ne "),
    (re.compile(r"\\(?:leq|le|leqslant)(?![A-Za-z])|<="), r"\\le "),
    (re.compile(r"\\(?:geq|ge|geqslant)(?![A-Za-z])|>="), r"\\ge "),
    (re.compile(r"\\(?:varnothing|emptyset)(?![A-Za-z])|\\\{\s*\\\}"), r"\\emptyset "),
    (re.compile(r"\\(?:infin|infty)(?![A-Za-z])|\binf(?:inity)?\b"), r"\\infty "),
    (re.compile(r"\\mathbb\s*\{?R\}?"), r"(-\\infty, \\infty)"),
    (re.compile(r"\{(?:bmatrix|Bmatrix|vmatrix|matrix|smallmatrix)\}"), "{pmatrix}"),
    (re.compile(r"\\begin\{array\}\{[^{}]*\}"), r"\\begin{pmatrix}"),
    (re.compile(r"\\end\{array\}"), r"\\end{pmatrix}"),
    (re.compile(r"\\\{"), "{"),
    (re.compile(r"\\\}"), "}"),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\\%|%|\s*\b(?:percent(?:age)?|pct)\b"), ""),
]
_TEXT_COMMAND = re.compile(
    r"\\(?:text|textbf|textit|textnormal|textrm|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|boldsymbol|bf|rm)\s*\{"
)
_TRAILING_TEXT = re.compile(
    r"\\(?:text|textnormal|textrm|mbox|mathrm)\s*\{\s*([A-Za-z][A-Za-z .]*)\}\s*(?:\^\s*\{?\s*\d\s*\}?)?\s*$"
)
_MATH_WORDS = {
    "and", "or", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "pi", "mod",
    "pmod", "infty", "inf", "infinity", "sqrt", "frac", "cdot", "times", "le", "ge", "ne", "cup", "cap", "to", "in",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "det", "gcd", "lcm", "max", "min",
}
_NUMBER_NAMES = {
    name: str(value)
    for value, name in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS = {"thousand", "million", "billion", "trillion", "percent", "percentage", "pct"}
_UNIT_WORDS = re.compile(r"^(.*[\d}]) ([A-Za-z]{2,}(?:\.? [A-Za-z]{2,}){0,2}\.?) ?(?:\^ ?\{? ?\d ?\}?)?$")
_SIMPLE_LHS = (
    r"(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?'?|\\[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?"
    r"|[A-Za-z]{1,2}\([A-Za-z]\)|\(\s*[A-Za-z](?:\s*,\s*[A-Za-z])*\s*\))"
)
_ASSIGNMENT = re.compile(rf"^\s*{_SIMPLE_LHS}\s*(?<![<>!\\])=(?!=)")
_MEMBERSHIP = re.compile(rf"^\s*{_SIMPLE_LHS}\s*\\in(?![A-Za-z])\s*")
_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")
_SPACED_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?$")
_NUMBER_TOKEN = re.compile(r"(?<![\d.A-Za-z_])(\d+)(?:\.(\d*))?(?![\d])|(?<![\d.A-Za-z_])\.(\d+)(?![\d])")


def _strip_delimiters(s: str) -> str:
    """Remove enclosing ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` (a few layers)."""
    for _ in range(4):
        s = s.strip()
        for opener, closer in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
            if len(s) >= len(opener) + len(closer) and s.startswith(opener) and s.endswith(closer):
                s = s[len(opener) : len(s) - len(closer)]
                break
        else:
            return s
    return s.strip()


def _unwrap_whole_box(s: str) -> str:
    """``\\boxed{x}`` -> ``x`` when the box is the whole string."""
    match = _BOX.match(s)
    if match:
        box = _box_at(s, match)
        if box is not None and box[1] == len(s):
            return box[2]
    return s


def _unwrap_text_commands(s: str) -> str:
    r"""``\text{abc}`` -> ``abc`` (and ``\mbox``, ``\textbf``, ``\mathrm``, ...), nesting aware."""
    for _ in range(50):
        match = _TEXT_COMMAND.search(s)
        if match is None:
            return s
        end = group_end(s, match.end() - 1, limit=MAX_ANSWER_CHARS)
        if end is None:
            return s[: match.start()] + s[match.end() :]
        s = s[: match.start()] + " " + s[match.end() : end - 1] + " " + s[end:]
    return s


def _repeating_decimal(match: re.Match) -> str:
    """``0.\\overline{3}`` -> ``\\frac{3}{9}``, the exact value of a repeating decimal."""
    integer, fixed, repeat = match.group(1) or "0", match.group(2), match.group(3)
    denominator = (10 ** len(repeat) - 1) * 10 ** len(fixed)
    numerator = int(integer + fixed + repeat) - int(integer + fixed or "0")
    return rf"\frac{{{numerator}}}{{{denominator}}}"


def _plain_to_latex(s: str) -> str:
    r"""Plain-text math as LaTeX: ``sqrt(2)`` -> ``\sqrt{2}``, ``pi`` -> ``\pi``, ``x**2`` -> ``x^2``,
    ``3 million`` -> ``3\times10^{6}``, ``7 3/4`` -> ``7\frac{3}{4}``, ``0.\overline{3}``."""
    s = re.sub(r"^\*\*(.*)\*\*$", r"\1", s.strip())  # markdown bold
    s = re.sub(r"(?<=[\w)}])\s*\*\*\s*(?=[\w({-])", "^", s)
    s = re.sub(r"(?<![\\A-Za-z])pi(?![A-Za-z])", r"\\pi ", s)
    for _ in range(10):
        match = re.search(r"(?<![\\A-Za-z])sqrt\s*\(", s)
        end = group_end(s, match.end() - 1, limit=MAX_ANSWER_CHARS) if match else None
        if end is None:
            break
        s = s[: match.start()] + r"\sqrt{" + s[match.end() : end - 1] + "}" + s[end:]
    word = _NUMBER_NAMES.get(s.strip().lower())
    if word is not None:
        return word
    scales = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
    s = re.sub(
        r"(\d)\s*(thousand|million|billion|trillion)\b", lambda m: rf"{m.group(1)}\times10^{{{scales[m.group(2)]}}}", s
    )
    s = re.sub(r"^(-?\d+)\s+(\d+)\s*/\s*(\d+)$", r"\1\\frac{\2}{\3}", s.strip())
    s = re.sub(r"(?<![\d.])(\d*)\.(\d*)\\overline\{(\d+)\}", _repeating_decimal, s)
    return re.sub(r"\^\s*\{?\s*\\(?:text|mathrm)\s*\{\s*(?:st|nd|rd|th)\s*\}\s*\}?", "", s)


def _strip_units(s: str) -> str:
    r"""Drop a trailing unit after a value: ``5 \text{ cm}^2``, ``10 dollars``, ``125 miles``."""
    match = _TRAILING_TEXT.search(s)
    if match and re.search(r"[\d}]\s*$", s[: match.start()]):
        s = s[: match.start()]
    match = _UNIT_WORDS.match(s.strip())
    if match:
        words = {w.strip(".").lower() for w in match.group(2).split()}
        if not words & _MATH_WORDS and not re.search(r"\\[A-Za-z]+\s*$", match.group(1)):
            s = match.group(1)
    return s


def _strip_assignment(element: str) -> str:
    r"""``x = 3`` -> ``3``, ``x = 1 + 2 = 3`` -> ``3``, ``x \in [0, 1]`` -> ``[0, 1]``, ``x \approx 3`` -> ``3``."""
    approximation = re.split(r"\\approx(?![A-Za-z])", element)
    if len(approximation) > 1:  # "x \approx 3" -> "3", but "1/3 \approx 0.33" -> "1/3"
        name_only = re.fullmatch(rf"\s*{_SIMPLE_LHS}\s*", approximation[0])
        element = approximation[-1] if name_only else approximation[0]
    if _ASSIGNMENT.match(element):
        pieces = re.split(r"(?<![<>!\\])=(?!=)", element)
        return pieces[-1]
    return _MEMBERSHIP.sub("", element, count=1)


def assigned_name(answer: str) -> str | None:
    """The variable an answer assigns (``"x"`` for ``x = 3``), or None."""
    match = _ASSIGNMENT.match(clean_answer(answer))
    return re.sub(r"\s+", "", match.group()[:-1]) if match else None


def _compact_spaces(s: str) -> str:
    r"""Remove spaces, keeping one after a command followed by a letter (``\sin b`` stays)."""
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x00", s)
    return re.sub(r"\s+", "", s).replace("\x00", " ")


def _fix_shorthand(s: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{2}`` -> ``\frac{1}{2}``, ``\sqrt2`` -> ``\sqrt{2}``."""
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)(?=\{)", r"\\frac{\1}", s)
    s = re.sub(r"\\frac(\{[^{}]*\})(\d)", r"\\frac\1{\2}", s)
    return re.sub(r"\\sqrt(\d+|[A-Za-z](?![A-Za-z]))", r"\\sqrt{\1}", s)


def _canonical_number(match: re.Match) -> str:
    """Leading zeros off the integer part, trailing zeros off the fraction ("025" -> "25", "27.0" -> "27")."""
    if match.group(3) is not None:  # ".5"
        integer, fraction = "0", match.group(3)
    else:
        integer, fraction = match.group(1), match.group(2) or ""
    integer = integer.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{integer}.{fraction}" if fraction else integer


def clean_answer(answer: str) -> str:
    r"""Presentation-free LaTeX that keeps the mathematical content (``x =``, spacing kept).

    This is what the symbolic step parses; ``normalize_answer`` goes further for string matching.
    Text longer than any answer (``10 * MAX_ANSWER_CHARS``) only loses its whitespace.
    """
    if len(answer) > 10 * MAX_ANSWER_CHARS:
        return re.sub(r"\s+", "", answer)
    s = answer.translate(_UNICODE_TABLE) if not answer.isascii() else answer
    s = re.sub(r"\s+", " ", s.replace("\x00", ""))
    s = _unwrap_whole_box(_strip_delimiters(s))
    s = _strip_delimiters(s)
    for pattern, replacement in _SUBSTITUTIONS:
        s = pattern.sub(replacement, s)
    s = _plain_to_latex(s)
    s = _strip_units(s)
    s = re.sub(r"\s+", " ", _unwrap_text_commands(s))
    s = _strip_units(s)
    s = re.sub(r"(?i)\s*,?\s*\b(?:and|or)\b\s*", ", ", s)
    s = s.strip().rstrip(".").strip()
    if _SPACED_THOUSANDS.match(s):
        s = s.replace(" ", "")
    s = s.lstrip(":").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    return s


def normalize_answer(answer: str) -> str:
    r"""Canonical string form of an answer: equal strings mean equal answers.

    Strips delimiters and boxes, ``\left``/``\right``, ``\dfrac``/``\tfrac``, degrees, percent
    signs, ``\$``, units and words in ``\text{}``/``\mbox{}`` or after a number, thousands
    separators (tuples like ``(1,2)`` are kept), ``x =`` / ``x \in``, trailing periods, spaces,
    leading zeros and trailing decimal zeros, and TeX spacing (``\!``, ``\,``). A lone choice
    in parentheses, ``(B)``, becomes ``B``.
    """
    s = clean_answer(answer)
    s = ",".join(_strip_assignment(part) for part in split_top_level(s) or [s])
    s = _compact_spaces(s)
    s = _fix_shorthand(s)
    s = re.sub(r"\+?\\infty", r"\\infty", s)
    s = _NUMBER_TOKEN.sub(_canonical_number, s)
    s = s.rstrip(".").lstrip(":")
    choice = re.fullmatch(r"\(([A-E])\)|([A-E])[.)]", s)
    if choice:
        s = choice.group(1) or choice.group(2)
    return s
