"""Is this answer the key? The comparison a maths teacher makes, offline and exact, shared by
grading (jobs/grade.py) and a profile's [check] (worker/check.py), with the final-answer rule.

The answer's final answer (`final_answer`) and the key are read by worker/mathtext.py;
plain numbers are compared here as exact fractions, with a decimal held to the places it is
written to; anything else (LaTeX, roots, equations, intervals) by Hugging Face's math-verify
on SymPy, which is maintained, parses LaTeX and knows that `x = 2, x = 3` is the set {2, 3}
and that `2x - y + 1 = 0` is `y = 2x + 1`. It is imported only when a comparison needs it
(0.8 s and about 45 MB, measured: bench/grading.py), so a worker without [check] never loads it.

The rules where a teacher might hesitate, chosen and documented in docs/grading.md:
- a decimal answer to an exact key whose decimals never end (4/3, √2) is right when it is
  the key rounded (or, written "1.333...", cut) to its places, at least 2: 1.33 for 4/3;
- a decimal key is matched to the places it is written to: 1.333 for key 1.33, not 1.3;
- units: when both give one they must be the same (no conversion); when one leaves it out,
  the numbers decide (`12 cm` for key `12`);
- 25% is 1/4, and also the number 25 when the other side has no % sign.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache

from worker import mathtext
from worker.mathtext import Number

_ANSWER_LINE = re.compile(r"(?:final\s+answer|answer|정답|답)\s*[:：]\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
# What SymPy is not asked to work out: a power tower, a huge power or factorial, a sum or
# limit, a very long expression. math-verify's own timeout is a SIGALRM, which only the main
# thread may set (and workers answer on threads), so such answers are refused instead.
_TOO_HARD = re.compile(
    r"\^\s*\{[^{}]*\^|\^\s*\w+\s*\^|\^\s*\{?\s*\d{4,}|\d{4,}\s*!|\\(?:sum|prod|int|lim)\b"
)
MAX_CHARS = 300
SHOWN = 60


@dataclass(frozen=True)
class Verdict:
    """`correct` True/False when decided, None when the comparison cannot say (free text,
    an answer that is not maths); `note` says what was compared, in one line."""

    correct: bool | None
    note: str


def final_answer(text: str) -> str:
    """Where a worked solution states its result: the last `Answer:` line (`답:`, `정답:`),
    else the last `\\boxed{}`, else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if m := _ANSWER_LINE.search(line):
            return m.group(1).strip()
    if boxed := _BOXED.findall(text):
        return boxed[-1]
    return lines[-1] if lines else ""


def grade(answer: str, key: str, rounding: bool = True) -> Verdict:
    """The verdict on an answer (a whole solution: its final answer is compared) against a
    key. `rounding=False` wants decimals equal, not rounded ([check]'s use)."""
    stated = final_answer(answer)
    return _grade(stated, key.strip(), rounding)


@lru_cache(maxsize=4096)
def _grade(stated: str, key: str, rounding: bool) -> Verdict:
    said, want = mathtext.read(stated), mathtext.read(key)
    shown = f"final answer {_short(stated)}"
    if not stated:
        return Verdict(False, "no final answer")
    if not want.maths:
        return _text(stated, key, shown)
    if not said.maths:
        return Verdict(None, f"{shown} is not read as maths; key {_short(key)}")
    if said.unit and want.unit and said.unit != want.unit:
        return Verdict(False, f"{shown}: unit {said.unit}, key's {want.unit}")
    if len(said.parts) != len(want.parts):
        n, m = len(said.parts), len(want.parts)
        return Verdict(False, f"{shown} gives {_values(n)}, key {_short(key)} {_values(m)}")
    same = _matched(said.parts, want.parts, rounding)
    if same is None:
        return Verdict(None, f"{shown} could not be compared with key {_short(key)}")
    return Verdict(same, f"{shown} {'=' if same else '≠'} key {_short(key)}")


def _values(n: int) -> str:
    return "1 value" if n == 1 else f"{n} values"


def _matched(said: tuple[str, ...], want: tuple[str, ...], rounding: bool) -> bool | None:
    """Whether every value of the key is matched by a value of the answer, in any order."""
    left = list(said)
    for part in want:
        found = None
        for i, other in enumerate(left):
            verdict = _same(other, part, rounding)
            if verdict:
                found = i
                break
            if verdict is None and len(want) == 1:
                return None
        if found is None:
            return False
        left.pop(found)
    return True


def _same(said: str, want: str, rounding: bool) -> bool | None:
    a, k = mathtext.number(said), mathtext.number(want)
    if a is not None and k is not None:
        return _numbers_agree(a, k, rounding)
    # 1.41 for √2: the key's value, worked out, held to the answer's places.
    if a is not None and a.places is not None and k is None and (value := _value(want)) is not None:
        return _decimal_agrees(a, value, exact_key=False, rounding=rounding)
    return _verify(mathtext.latex(want), mathtext.latex(said))


def _numbers_agree(a: Number, k: Number, rounding: bool) -> bool:
    if a.percent != k.percent and a.face == k.face:
        return True  # 25% for 25: the % sign left out
    if a.value == k.value:
        return True
    if not rounding:
        return False
    if k.places is not None:  # a decimal key: the answer held to the key's places
        places = a.places if a.places is not None else k.places
        return places >= k.places and _round(a.value, k.places) == k.value
    if a.places is not None:
        return _decimal_agrees(a, k.value, exact_key=True, rounding=rounding)
    return False


def _decimal_agrees(a: Number, key: Fraction | Decimal, exact_key: bool, rounding: bool) -> bool:
    """A decimal answer to a key it cannot write exactly: the key rounded to the answer's
    places (at least 2), or cut there when the answer ends "...". A key that ends in few
    decimals (0.125) must be written in full."""
    if not rounding or a.places is None or a.places < 2:
        return False
    if exact_key and isinstance(key, Fraction) and _terminates(key):
        return False
    want = Fraction(a.value)
    if _round(key, a.places) == want:
        return True
    return a.cut and _round(key, a.places, ROUND_DOWN) == want


def _terminates(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _round(value: Fraction | Decimal, places: int, how: str = ROUND_HALF_UP) -> Fraction:
    exact = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(
        value, Fraction) else value  # fmt: skip
    return Fraction(exact.quantize(Decimal(1).scaleb(-places), rounding=how))


def _text(stated: str, key: str, shown: str) -> Verdict:
    said, want = mathtext.words(stated), mathtext.words(key)
    if said == want:
        return Verdict(True, f"{shown} = key {_short(key)} (as text)")
    if len(said.split()) == 1 and len(want.split()) == 1:
        return Verdict(False, f"{shown} ≠ key {_short(key)} (as text)")
    return Verdict(None, f"{shown} is not the key {_short(key)} word for word")


def _short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= SHOWN else one[: SHOWN - 1] + "…"


# --- math-verify ---------------------------------------------------------------------------


def _parse(latex: str):
    if len(latex) > MAX_CHARS or _TOO_HARD.search(latex):
        return []
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${latex}$", extraction_config=[LatexExtractionConfig()], **_timeout("parsing"))


def _verify(key: str, said: str) -> bool | None:
    """math-verify's verdict, or None when either side does not parse as maths."""
    gold, target = _parse(key), _parse(said)
    if not gold or not target:
        return None
    from math_verify import verify

    return bool(verify(gold, target, **_timeout("verify")))


def _value(latex: str) -> Decimal | None:
    """A key's real value to 30 digits (√2, 2π/3), or None when it is no number."""
    parsed = _parse(mathtext.latex(latex))
    try:
        expr = parsed[0]
        if not getattr(expr, "is_number", False) or not expr.is_real:
            return None
        return Decimal(str(expr.evalf(30)))
    except (IndexError, TypeError, ValueError, ArithmeticError):
        return None


def _timeout(kind: str) -> dict:
    """math-verify's SIGALRM timeout in the main thread; none elsewhere (`_TOO_HARD`)."""
    seconds = 5 if threading.current_thread() is threading.main_thread() else None
    return {"parsing_timeout": seconds} if kind == "parsing" else {"timeout_seconds": seconds}


# math-verify warns once, at WARNING, that its timeout is off: the guard above replaces it.
logging.getLogger("math_verify").setLevel(logging.ERROR)
