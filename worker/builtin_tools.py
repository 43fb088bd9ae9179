"""Function tools shipped with askbatch; profiles name them: `worker.builtin_tools:evaluate`."""

from __future__ import annotations

import ast
import math
import operator

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "abs": abs, "round": round, "gcd": math.gcd, "lcm": math.lcm}
_CONSTANTS = {"pi": math.pi, "e": math.e}
# The largest whole number a product or power may make: more cannot be printed anyway (Python
# writes at most 4,300 digits), and (9**999)**999 would take the CPU for minutes.
MAX_BITS = 100_000


def evaluate(expression: str) -> str:
    """Evaluate an arithmetic expression exactly as a calculator would: numbers, + - * / // %
    **, parentheses, pi, e, sqrt, abs, round, gcd, lcm. Nothing else is evaluated."""
    tree = ast.parse(expression.replace("^", "**"), mode="eval")
    value = _eval(tree.body)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 1000:
            raise ValueError("exponent too large")
        if _too_big(node.op, left, right):
            raise ValueError("the result would be too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"not allowed in an arithmetic expression: {ast.unparse(node)!r}")


def _too_big(op: ast.operator, left: float | int, right: float | int) -> bool:
    if not (isinstance(left, int) and isinstance(right, int)):
        return False  # floats overflow with an error of their own
    bits = abs(left).bit_length()
    if isinstance(op, ast.Pow):
        return bits > 1 and right * bits > MAX_BITS
    return isinstance(op, ast.Mult) and bits + abs(right).bit_length() > MAX_BITS
