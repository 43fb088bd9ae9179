"""Written answers as a maths teacher reads them (worker/grading.py compares them): wording,
Korean endings, Unicode signs, units and lists taken off, leaving what the verifier parses.

    "x는 3이다" → 3        "x = 2 or x = 3" → [2, 3]      "x ∈ {2, 3}" → [2, 3]
    "12 cm" → 12 (unit cm)  "2 1/3" → 2\\frac{1}{3}       "x²−1" → x^2-1

Only the words around maths are read here; the maths itself is left to math-verify (SymPy),
save plain numbers, which are read exactly (`Number`): most keys are one, and a sheet of
them is graded without SymPy.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

_UNICODE = {
    "−": "-", "–": "-", "—": "-", "×": "\\times ", "÷": "\\div ", "·": "\\cdot ", "⋅": "\\cdot ",
    "²": "^2", "³": "^3", "⁴": "^4", "√": "\\sqrt", "π": "\\pi ", "∞": "\\infty ",
    "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∈": "\\in ", "½": "1/2", "⅓": "1/3", "¼": "1/4",
    "¾": "3/4", "…": "...", "：": ":", "，": ",", "₁": "_1", "₂": "_2", "₃": "_3",
}  # fmt: skip
# Korean endings after the value ("3이다", "7개입니다"), the "is" of "x는 3", and the words
# between values ("2 또는 3", "2와 3").
_KO_END = re.compile(r"\s*(?:입니다|이에요|이예요|이다|예요|이요|이야|임|다|요)?\s*[.!。]?\s*$")
_KO_TOPIC = re.compile(r"^(?P<name>[a-zA-Z](?:_\w+)?)\s*(?:의\s*값)?\s*[은는]\s+")
_KO_ANSWER = re.compile(r"^(?:정답|답|해|근|값)\s*(?:[은는이:]|은\s*|는\s*)\s*")
_KO_OR = re.compile(r"\s*(?:또는|혹은|이거나|이나|거나|그리고|및)\s*")
_KO_AND = re.compile(r"(?<=[\d}a-zA-Z])\s*[와과]\s+")
_EN_LEAD = re.compile(
    r"^(?:(?:so|thus|therefore|hence)[\s,]+)?(?:the\s+)?(?:final\s+)?"
    r"(?:answer|result|solution|value|roots?|solutions|zeros?)\s+(?:is|are|=)\s*:?\s*",
    re.IGNORECASE,
)
_EN_IS = re.compile(r"^(?P<name>[a-zA-Z])\s+(?:is|equals)\s+", re.IGNORECASE)
_EN_OR = re.compile(r"\s+(?:or|and)\s+|\\text\{\s*(?:or|and)\s*\}", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_TEXT = re.compile(r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{([^{}]*)\}")
_DELIMITERS = re.compile(r"\\[()\[\]]|\$\$?")
# A value given to a one-letter name ("x = 3", "x_1 = 2"): the value is what is graded.
_ASSIGNED = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(?P<value>[^=]+)$")
_IN_SET = re.compile(r"^[a-zA-Z]\s*\\in\s*")
# Units: a known one, or any Hangul word, after the number, with an optional power.
_UNITS = (
    "mm|cm|km|m|mg|kg|g|ml|mL|L|l|s|sec|min|h|hr|hrs|hours?|minutes?|seconds?|days?|"
    "weeks?|years?|deg|degrees?|rad|radians?|in|ft|yd|mi|lb|lbs|oz|dollars?|cents?|won|"
    "m/s|km/h|cm/s|units?"
)
_UNIT = re.compile(
    r"^(?P<value>.*?[\d)}.])\s*(?P<unit>(?:" + _UNITS + r"|[가-힣]+|°)(?:\^\{?[23]\}?)?)\s*$"
)
_CURRENCY = re.compile(r"^\\?\$\s*(?=\d)|^₩\s*(?=\d)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(
    r"^(?P<sign>[-+])?\s*(?:(?P<dec>\d*\.\d+)(?P<dots>\.\.\.)?"
    r"|(?:(?P<whole>\d+)\s*)?\\[dt]?frac\{\s*(?P<ft>\d+)\s*\}\{\s*(?P<fb>\d+)\s*\}"
    r"|(?:(?P<mixed>\d+)\s+)?(?P<top>\d+)\s*/\s*(?P<bottom>\d+)|(?P<int>\d+))\s*(?P<pct>\\?%)?$"
)
# "따라서 x = 1", and a subject before the number: "사과는 모두 7개".
_KO_LEAD = re.compile(
    r"^(?:따라서|그러므로|그래서|즉|결론적으로)[,\s]*"
    r"|^[가-힣]+[은는이가]\s+(?:모두\s+|총\s+|전부\s+)?(?=[-\d])"
)


@dataclass(frozen=True)
class Number:
    """A plain number as written: its exact value, the decimal places it was written to
    (None when exact: an integer or a fraction), whether it ended "..." (cut, not rounded),
    and whether it was a percentage (`value` is then the fraction: 25% is 1/4)."""

    value: Fraction
    places: int | None = None
    cut: bool = False
    percent: bool = False

    @property
    def face(self) -> Fraction:
        """The number without its % sign (25 for 25%)."""
        return self.value * 100 if self.percent else self.value


@dataclass(frozen=True)
class Written:
    """An answer or a key as read: its values (one, or several for a set of roots), the unit
    after them ("" for none), and whether it reads as maths at all."""

    parts: tuple[str, ...]
    unit: str = ""
    maths: bool = True

    @property
    def shown(self) -> str:
        return ", ".join(self.parts) + (f" {self.unit}" if self.unit else "")


def read(text: str) -> Written:
    """`text` (a final answer, or a key) as a teacher reads it."""
    text = _plain(text)
    if m := _IN_SET.match(text):
        text = text[m.end() :]
    parts = [p for p in _split(text) if p]
    units = set()
    values = []
    for part in parts:
        value, unit = _unit(part)
        if (m := _ASSIGNED.match(value)) and not _has_variable(m["value"]):
            value = m["value"].strip()
            value, unit2 = _unit(value)
            unit = unit or unit2
        units.add(unit)
        values.append(value)
    unit = next(iter(units - {""}), "") if len(units - {""}) == 1 else ""
    if len(units - {""}) > 1:
        unit = "/".join(sorted(units - {""}))
    return Written(tuple(values), unit, bool(values) and all(_is_maths(v) for v in values))


def number(text: str) -> Number | None:
    """A plain number: 7, -3, 2.50, 1.333..., 4/3, 2 1/3, \\frac{4}{3}, 2\\frac{1}{3}, 25%."""
    m = _NUMBER.match(text)
    if not m:
        return None
    places = None
    if m["dec"] is not None:
        value, places = Fraction(Decimal(m["dec"])), len(m["dec"].split(".")[1])
    elif m["int"] is not None:
        value = Fraction(int(m["int"]))
    else:
        whole = m["whole"] or m["mixed"]
        top, bottom = (m["ft"], m["fb"]) if m["ft"] is not None else (m["top"], m["bottom"])
        if int(bottom) == 0 or (whole and int(top) >= int(bottom)):
            return None  # "2 5/3" is not a mixed number
        value = int(whole or 0) + Fraction(int(top), int(bottom))
    percent = bool(m["pct"])
    value = (-value if m["sign"] == "-" else value) / (100 if percent else 1)
    return Number(value, places, bool(m["dots"]), percent)


def latex(part: str) -> str:
    """A part as LaTeX for the verifier: a plain mixed number written with \\frac."""
    part = re.sub(r"(?<![\d.])(\d+)\s+(\d+)\s*/\s*(\d+)(?![\d.])", r"\1\\frac{\2}{\3}", part)
    part = re.sub(r"(?<![\d.}])(\d+)\s*/\s*(\d+)(?![\d.])", r"\\frac{\1}{\2}", part)
    return part.replace("%", "\\%").replace("\\\\%", "\\%")


def words(text: str) -> str:
    """Free text compared as text: case, accents' forms, punctuation, spacing and a Korean
    ending left out ("Paris." = "paris", "서울입니다" = "서울")."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = _KO_END.sub("", text) if re.search(r"[가-힣]", text) else text
    text = re.sub(r"^(?:the|a|an)\s+", "", text)
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def _plain(text: str) -> str:
    for written, plain in _UNICODE.items():
        text = text.replace(written, plain)
    text = unicodedata.normalize("NFKC", text) if re.search(r"[^\x00-\x7f가-힣]", text) else text
    text = text.strip()
    while m := _BOXED.search(text):
        text = m.group(1)
    text = _TEXT.sub(r" \1 ", text)
    text = _DELIMITERS.sub(" ", text).strip()
    text = re.sub(r"\\[,;:! ]|~", " ", text).strip().rstrip(".;。")
    text = _KO_ANSWER.sub("", text)
    text = _KO_LEAD.sub("", text)
    text = _KO_TOPIC.sub(r"\g<name> = ", text)
    if re.search(r"[가-힣]", text):
        text = _korean_lead(_KO_END.sub("", text))
    text = _EN_LEAD.sub("", text)
    text = _EN_IS.sub(r"\g<name> = ", text)
    text = _KO_OR.sub(", ", text)
    text = _KO_AND.sub(", ", text)
    text = _EN_OR.sub(", ", text)
    text = _CURRENCY.sub("", text)
    text = _THOUSANDS.sub("", text)
    return " ".join(text.split()).rstrip(".")


def _korean_lead(text: str) -> str:
    """The maths after a Korean sentence's leading words: "이 방정식의 해는 x = 8" → x = 8."""
    tokens = text.split()
    i = 0
    while (
        i < len(tokens) - 1 and re.search(r"[가-힣]", tokens[i]) and not re.search(r"\d", tokens[i])
    ):
        i += 1
    rest = " ".join(tokens[i:])
    return rest if i and re.match(r"[-\d(]|[a-zA-Z](?![a-zA-Z])", rest) else text


def _split(text: str) -> list[str]:
    """Values separated by commas or semicolons at the top level: "2, 3", "{2, 3}", but one
    point or interval "(2, 3)", "[1, 2)"."""
    if re.fullmatch(r"\\?\{.*\\?\}", text):
        text = re.sub(r"^\\?\{|\\?\}$", "", text)
    elif re.fullmatch(r"[(\[].*[)\]]", text) and not _closes_early(text):
        return [text]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in ",;" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _closes_early(text: str) -> bool:
    """Whether the bracket that opens `text` closes before its end: "(1)(2), 3"."""
    depth = 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and i < len(text) - 1:
            return True
    return False


def _unit(part: str) -> tuple[str, str]:
    if part.endswith("%"):
        return part, ""  # a percentage is a number (worker/grading compares it)
    if m := _UNIT.match(part):
        unit = re.sub(r"\^\{?([23])\}?", r"^\1", m["unit"])
        unit = {"degree": "°", "degrees": "°", "deg": "°", "도": "°"}.get(unit, unit)
        return m["value"].strip(), unit
    return part, ""


def _has_variable(value: str) -> bool:
    return bool(re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", value)))


def _is_maths(part: str) -> bool:
    """Whether a part reads as maths: no word of two or more letters that is not a LaTeX
    command or a function name, and no Hangul."""
    if re.search(r"[가-힣]", part):
        return False
    bare = re.sub(r"\\[a-zA-Z]+", " ", part)
    names = {"sin", "cos", "tan", "log", "ln", "exp", "sqrt", "pi", "mod"}
    return not any(w.lower() not in names for w in re.findall(r"[a-zA-Z]{2,}", bare))
