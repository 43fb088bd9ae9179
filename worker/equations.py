"""The substitution half of a profile's [check] (worker/check.py): when a problem states one
equation in one unknown, every number of its stated answer must satisfy it, exactly.

Why: a model that solves its own problem again tends to repeat its own mistake (the bundled
model factored 2x^2 - 5x + 3 as (2x - 1)(x - 3) both times); arithmetic does not. Only what
can be evaluated exactly is checked (integers, decimals, fractions, + - * / and whole
powers); anything else (roots, several unknowns, no equation) leaves the verdict to the
solver.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from fractions import Fraction

_MATH_TOKEN = re.compile(r"[\d.+\-*/^()²³×÷−·]*(?:[a-zA-Z](?![a-zA-Z])[\d.+\-*/^()²³×÷−·]*)*")
_WRITTEN = {"−": "-", "×": "*", "·": "*", "÷": "/", "²": "^2", "³": "^3"}
_UNEXACT = re.compile(r"√|sqrt|±|\bi\b|π|pi|\.\.\.")
MAX_POWER = 12
_QUOTES = "'\"‘’“”「」『』"
_SYMBOLS = r"[\w+\-*/^().²³×÷−·]"
_AFTER_WORD = re.compile(rf"(?P<maths>{_SYMBOLS}*?[\d)a-zA-Z²³])[^\W\d_a-zA-Z]\w*")
_BEFORE_WORD = re.compile(rf"\w*[^\W\d_a-zA-Z](?P<maths>[\d(a-zA-Z\-−]{_SYMBOLS}*?)")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX = {"\\(": " ", "\\)": " ", "\\[": " ", "\\]": " ", "$": " ", "\\cdot": "*",
          "\\times": "*", "\\div": "/", "\\left": "", "\\right": ""}  # fmt: skip
_FRAC = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:\s*/\s*\d+(?![\d.]))?")


@dataclass(frozen=True)
class Equation:
    text: str  # as the problem writes it
    unknown: str
    left: ast.expr
    right: ast.expr

    @property
    def key(self) -> str:
        """The same for the same equation however it is spaced: 3x+11=14, 3x + 11 = 14."""
        return re.sub(r"\s+", "", self.text)

    def sides(self, value: Fraction) -> tuple[Fraction, Fraction]:
        return _eval(self.left, self.unknown, value), _eval(self.right, self.unknown, value)


def numbers(text: str) -> frozenset[Fraction]:
    """The numbers in a piece of maths: integers, decimals, a/b and \\frac{a}{b}. Thousands
    separators ("5,050") are read as one number."""
    text = _FRAC.sub(lambda m: f" {m.group(1)}/{m.group(2)} ", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    found = set()
    for token in _NUMBER.findall(text):
        try:
            found.add(Fraction(token.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            continue
    return frozenset(found)


def find_equation(problem: str) -> Equation | None:
    """The one equation in one unknown that `problem` states, or None (none, several, or one
    that cannot be evaluated exactly)."""
    found = []
    parts = _plain(problem).split("=")
    for before, after in itertools.pairwise(parts):
        left = " ".join(_maths(before.split(), leftward=True))
        right = " ".join(_maths(after.split(), leftward=False))
        if left and right and not _is_given(left, right):
            found.append(f"{left} = {right}")
    if len(found) != 1:
        return None  # none, a system, or a chain (a = b = c)
    text = found[0]
    unknowns = set(re.findall(r"[a-zA-Z]", text))
    if len(unknowns) != 1:
        return None
    unknown = unknowns.pop()
    try:
        left, right = (_parse(side, unknown) for side in text.split("="))
    except (SyntaxError, ValueError):
        return None
    return Equation(text, unknown, left, right)


def failed_substitution(problem: str, stated: str) -> str | None:
    """Why the stated answer is wrong by substitution ("x = 1/2 makes the left side ... "),
    or None when it holds or cannot be checked this way."""
    equation = find_equation(problem)
    if equation is None or _UNEXACT.search(stated):
        return None
    for value in sorted(_assigned(stated, equation.unknown) or numbers(stated)):
        try:
            left, right = equation.sides(value)
        except ZeroDivisionError:
            return f"{equation.unknown} = {value} makes {equation.text} divide by zero"
        except ValueError:
            return None
        if left != right:
            return (
                f"{equation.unknown} = {value} does not satisfy {equation.text} "
                f"(the left side is {left}, the right side {right})"
            )
    return None


def _assigned(stated: str, unknown: str) -> frozenset[Fraction]:
    """The values a stated answer gives the unknown ("2x = 8, so x = 4" gives 4), or none
    when it names no `x = ...`; then every number of it is a value."""
    values: frozenset[Fraction] = frozenset()
    for before, after in itertools.pairwise(stated.split("=")):
        if re.search(rf"(?:^|[\s,;:(\[{{\"']){unknown}\s*$", before):  # x alone, not 2x
            values |= numbers(after)
    return values


def _maths(tokens: list[str], leftward: bool) -> list[str]:
    """The tokens next to "=" that are maths (numbers, operators, one-letter unknowns),
    walking away from it; a token that is maths up to a non-Latin word ("20을", a Korean
    particle after the number) ends the walk with its maths part."""
    kept = []
    for token in reversed(tokens) if leftward else tokens:
        token = token.rstrip(".,").strip(_QUOTES)
        if _MATH_TOKEN.fullmatch(token):
            kept.append(token)
            continue
        part = (_BEFORE_WORD if leftward else _AFTER_WORD).fullmatch(token)
        if part and _MATH_TOKEN.fullmatch(part["maths"]):
            kept.append(part["maths"])
        break
    return kept[::-1] if leftward else kept


def _plain(text: str) -> str:
    """LaTeX maths as plain text: \\(\\frac{3}{4}x = 1\\) as (3/4)x = 1."""
    for _ in range(3):  # nested fractions, innermost first
        text = _LATEX_FRAC.sub(_fraction, text)
    for latex, plain in _LATEX.items():
        text = text.replace(latex, plain)
    return re.sub(r"\^\{([^{}]*)\}", r"^(\1)", text)


def _fraction(m: re.Match) -> str:
    top, bottom = (p if re.fullmatch(r"\w+", p.strip()) else f"({p})" for p in m.groups())
    return f"({top.strip()}/{bottom.strip()})"


def _is_given(left: str, right: str) -> bool:
    """ "x = 3" or "3 = x": a value the problem gives, not an equation to solve."""
    one = re.compile(r"[a-zA-Z]")
    number = re.compile(r"-?[\d./]+")
    return bool(
        (one.fullmatch(left) and number.fullmatch(right))
        or (one.fullmatch(right) and number.fullmatch(left))
    )


def _parse(side: str, unknown: str) -> ast.expr:
    for written, plain in _WRITTEN.items():
        side = side.replace(written, plain)
    side = side.replace("^", "**").strip().rstrip(".,")
    # Written multiplication: 2x, 3(x + 1), (x - 1)(x + 2), x(x - 3).
    side = re.sub(rf"(?<=[\d){unknown}])\s*(?=[({unknown}])", "*", side)
    return ast.parse(side, mode="eval").body


def _eval(node: ast.expr, unknown: str, value: Fraction) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(repr(node.value))  # 0.1 as written, not as a binary float
    if isinstance(node, ast.Name) and node.id == unknown:
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _eval(node.operand, unknown, value)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, unknown, value), _eval(node.right, unknown, value)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right
        if isinstance(node.op, ast.Pow) and right.denominator == 1 and abs(right) <= MAX_POWER:
            return left ** int(right)
    raise ValueError(f"not exact arithmetic: {ast.unparse(node)}")
