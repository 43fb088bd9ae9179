"""The comparison of an answer with its key (worker/grading.py): a table of answer/key pairs
as a maths teacher marks them, in English and Korean, each with the exact verdict."""

from __future__ import annotations

import threading

import pytest

from worker.grading import final_answer, grade

RIGHT, WRONG, UNSURE = True, False, None

# (the answer as a model writes it, the key, the teacher's verdict)
TABLE = [
    # exact numbers, fractions, mixed numbers
    ("7", "7", RIGHT),
    ("8", "7", WRONG),
    ("Answer: 7", "7", RIGHT),
    ("x = 4/3", "4/3", RIGHT),
    ("\\frac{4}{3}", "4/3", RIGHT),
    ("1 1/3", "4/3", RIGHT),
    ("x = 7/3", "2 1/3", RIGHT),
    ("2\\frac{1}{3}", "7/3", RIGHT),
    ("2 2/3", "7/3", WRONG),
    ("8/6", "4/3", RIGHT),
    ("-3", "−3", RIGHT),
    ("x = −3", "-3", RIGHT),
    ("3", "-3", WRONG),
    ("0.5", "1/2", RIGHT),
    ("1/2", "0.50", RIGHT),
    ("5,050", "5050", RIGHT),
    ("7.0", "7", RIGHT),
    # decimals to the precision they are written to
    ("1.33", "4/3", RIGHT),
    ("1.333", "4/3", RIGHT),
    ("1.333...", "4/3", RIGHT),
    ("1.3", "4/3", WRONG),
    ("1.34", "4/3", WRONG),
    ("0.67", "2/3", RIGHT),
    ("0.66", "2/3", WRONG),
    ("0.13", "1/8", WRONG),
    ("4/3", "1.33", RIGHT),
    ("1.333", "1.33", RIGHT),
    ("1.3", "1.33", WRONG),
    ("1.33", "1.3", RIGHT),  # held to the key's one place
    ("1.41", "\\sqrt{2}", RIGHT),
    ("1.42", "\\sqrt{2}", WRONG),
    ("3.14", "\\pi", RIGHT),
    # percentages
    ("25%", "25%", RIGHT),
    ("0.25", "25%", RIGHT),
    ("25", "25%", RIGHT),
    ("1/4", "25 %", RIGHT),
    ("2.5%", "25%", WRONG),
    # LaTeX, Unicode minus and powers
    ("\\boxed{\\dfrac{3}{4}}", "0.75", RIGHT),
    ("$x = \\frac{-1}{2}$", "-0.5", RIGHT),
    ("x²−1", "(x-1)(x+1)", RIGHT),
    ("x^2 + 1", "(x-1)(x+1)", WRONG),
    ("2\\sqrt{3}", "\\sqrt{12}", RIGHT),
    ("3x² + 2", "3x^2 + 2", RIGHT),
    ("x^2 + y^2", "y² + x²", RIGHT),
    ("f'(x) = 3x^2 + 2", "3x^2+2", RIGHT),
    # sets of roots, in any order and wording
    ("x = 2 or x = 3", "3, 2", RIGHT),
    ("x = 2 and x = 3", "2, 3", RIGHT),
    ("x ∈ {2, 3}", "3, 2", RIGHT),
    ("x_1 = 3, x_2 = 2", "2, 3", RIGHT),
    ("\\{2, 3\\}", "2, 3", RIGHT),
    ("The roots are 2 and 3.", "2, 3", RIGHT),
    ("x = 2", "2, 3", WRONG),
    ("x = 2 or x = 4", "2, 3", WRONG),
    ("x = 1/2 or x = 3", "3, 0.5", RIGHT),
    ("(2, 3)", "(2, 3)", RIGHT),
    # equations equivalent to the key's
    ("2x - y + 1 = 0", "y = 2x + 1", RIGHT),
    ("y - 1 = 2x", "y = 2x + 1", RIGHT),
    ("y = 2x + 2", "y = 2x + 1", WRONG),
    # units
    ("12 cm", "12", RIGHT),
    ("12", "12 cm", RIGHT),
    ("12 cm", "12 cm", RIGHT),
    ("12 m", "12 cm", WRONG),
    ("13 cm", "12", WRONG),
    ("48 cm²", "48 cm^2", RIGHT),
    ("The answer is $12.", "12", RIGHT),
    ("180°", "180 degrees", RIGHT),
    # Korean
    ("답: 7", "7", RIGHT),
    ("정답: 7", "8", WRONG),
    ("x는 3이다", "3", RIGHT),
    ("x는 3입니다.", "x = 3", RIGHT),
    ("따라서 x = 1입니다.", "1", RIGHT),
    ("x = 2 또는 x = 3", "2, 3", RIGHT),
    ("근은 2와 3이다", "3, 2", RIGHT),
    ("사과는 모두 7개입니다", "7", RIGHT),
    ("7개", "7개", RIGHT),
    ("따라서, 이 방정식의 해는 \\( x = 8 \\)입니다.", "8", RIGHT),
    ("삼각형의 세 내각의 합은 180도입니다.", "180°", RIGHT),
    ("삼각형의 세 내각의 합은 360도입니다.", "180°", WRONG),
    ("8개", "7", WRONG),
    ("답: 서울입니다", "서울", RIGHT),
    ("답: 부산", "서울", WRONG),
    # free text: a normalised match, else a teacher (or a judge) reads it
    ("Paris.", "Paris", RIGHT),
    ("London", "Paris", WRONG),
    ("The capital of France is Paris.", "Paris", UNSURE),
    ("photosynthesis", "Photosynthesis", RIGHT),
    ("one and a third", "4/3", UNSURE),
]


@pytest.mark.parametrize(("answer", "key", "verdict"), TABLE)
def test_a_teacher_would_mark_it_so(answer: str, key: str, verdict: bool | None) -> None:
    got = grade(answer, key)
    assert got.correct is verdict, got.note
    assert got.note and "\n" not in got.note


def test_the_table_is_large_and_has_both_verdicts_in_both_languages() -> None:
    assert len(TABLE) >= 60
    korean = [row for row in TABLE if any("가" <= ch <= "힣" for ch in row[0] + row[1])]
    assert {v for *_, v in korean} >= {RIGHT, WRONG}
    assert {v for *_, v in TABLE} == {RIGHT, WRONG, UNSURE}


def test_the_note_says_what_was_compared() -> None:
    assert grade("Step 1 ...\nAnswer: 7/3", "2 1/3").note == "final answer 7/3 = key 2 1/3"
    assert grade("12 m", "12 cm").note == "final answer 12 m: unit m, key's cm"
    assert grade("1.3", "1.33").note == "final answer 1.3 ≠ key 1.33"


def test_the_final_answer_rule_is_the_one_check_uses() -> None:
    from worker import check

    assert check.final_answer is final_answer
    assert final_answer("work\n답: 7\nthat is all") == "7"
    assert final_answer("so \\boxed{\\frac{1}{2}} it is\nok") == "\\frac{1}{2}"


def test_without_rounding_a_decimal_must_be_exact() -> None:
    assert grade("1.333", "4/3", rounding=False).correct is False
    assert grade("x = 1 1/3", "4/3", rounding=False).correct is True


def test_what_sympy_would_not_finish_is_not_asked_of_it() -> None:
    for tower in ("10^{10^{10}}", "2^2^40", "10^{100000}", "100000!"):
        assert grade(tower, "2").correct is None, tower


def test_it_grades_off_the_main_thread() -> None:
    # Workers and the page's threads grade too: math-verify's SIGALRM timeout is main-only.
    got = []
    thread = threading.Thread(target=lambda: got.append(grade("2x - y + 1 = 0", "y = 2x + 1")))
    thread.start()
    thread.join(60)
    assert got and got[0].correct is True
