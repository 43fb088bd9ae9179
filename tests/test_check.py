"""A profile's [check] (worker/check.py): reading final answers, comparing their numbers, the
ask-again loop, and whole jobs through the real CLI and the API double."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from tests.conftest import askbatch, base_env, write_csv
from tests.double.expect import answer_for, structured_answer, usage_for
from worker.check import Check, CheckRule, agrees, checked, final_answer, numbers, question_for
from worker.equations import failed_substitution, find_equation
from worker.errors import ConfigError
from worker.models import COMPLETED, FAILED, INCOMPLETE, Row, Usage
from worker.profile import CHECK_INSTRUCTIONS, load_profile
from worker.providers.base import Thread, Turn
from worker.retry import Retrier
from worker.tools import ToolLog


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = 4", {4}),
        ("x = 4/3", {Fraction(4, 3)}),
        (r"\boxed{\frac{4}{3}}", {Fraction(4, 3)}),
        (r"\dfrac{-7}{2}", {Fraction(-7, 2)}),
        ("The sum is 5,050.", {5050}),
        ("x = -2 or x = 2.5", {-2, Fraction(5, 2)}),
        ("no numbers here", set()),
        ("x2 and v1.2.3", set()),  # names and versions are not numbers
    ],
)
def test_numbers_reads_the_numbers_of_an_answer(text, expected):
    assert numbers(text) == frozenset(Fraction(n) for n in expected)


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("2x = 8\nx = 4\nAnswer: x = 4", "x = 4"),
        ("Answer: 3\nWait, recheck.\nFinal answer: 5", "5"),
        (r"so the result is \boxed{12} and we are done", "12"),
        ("step one\nstep two\nx = 9", "x = 9"),
        ("정답: x = 4\n답: 4", "4"),  # 답: is Korean's Answer: (worker/grading)
        ("step one\n그래서 답은 이렇다", "그래서 답은 이렇다"),  # no Answer: line: the last line
        ("", ""),
    ],
)
def test_final_answer_is_the_stated_result(solution, expected):
    assert final_answer(solution) == expected


def test_agreement_is_by_numbers_and_tolerates_repeating_the_problem():
    problem = "Find the roots of x^2 - 5x + 6 = 0."
    assert agrees("x = 4/3", r"\frac{4}{3}", "Solve 3x = 4")
    assert agrees("The roots are 2 and 3 of x^2 - 5x + 6", "x = 2, x = 3", problem)
    # The stated answer names the problem's 6; the solver's leaves it out: still agreed.
    assert agrees("2 and 3 (product 6)", "2 and 3", problem)
    assert not agrees("x = 4", "x = 1", "Solve 2x = 8")
    assert not agrees("x = 4/3", "x = 1.333", "Solve 3x = 4"), "1.333 is not 4/3"
    assert not agrees("2 and 3", "2", problem), "a root missing that the problem lacks"
    assert not agrees("x = 4", "", "Solve 2x = 8"), "no answer agrees with nothing"
    assert not agrees("x = 4", "x = 4 or x = 7", "Solve 2x = 8"), "an extra root"


@pytest.mark.parametrize(
    ("problem", "equation"),
    [
        ("Solve the quadratic equation 2x^2 - 5x + 3 = 0 by factoring.", "2x^2 - 5x + 3 = 0"),
        ("방정식 3x + 5 = 20을 푸세요.", "3x + 5 = 20"),  # a particle after the number
        ("다음 방정식을 풀어라: 2(x − 3) = 4x + 2", "2(x − 3) = 4x + 2"),
        ("Find x if x² − 4x + 4 = 0", "x² − 4x + 4 = 0"),
        ("Solve for n: n/2 + 1/3 = 5/6.", "n/2 + 1/3 = 5/6"),
        (
            r"Solve \(\frac{3}{2}x + \frac{5}{2} = \frac{7}{2}\) step by step.",
            "(3/2)x + (5/2) = (7/2)",
        ),
        (r"\[ 2 \cdot (x-1) = \dfrac{x+1}{2} \]", "2 * (x-1) = ((x+1)/2)"),
        ("Evaluate 2x + 1 when x = 3.", None),  # a given value, not an equation to solve
        ("If y = 2x + 1 and x + y = 4, find x.", None),  # two unknowns
        ("Solve 2x + 1 = 5 and 3x - 1 = 8.", None),  # two equations
        ("A triangle has base 6 and height 4. Find its area.", None),
    ],
)
def test_find_equation_reads_one_equation_in_one_unknown(problem, equation):
    found = find_equation(problem)
    assert (found.text if found else None) == equation


@pytest.mark.parametrize(
    ("problem", "stated", "wrong"),
    [
        ("Solve 2x^2 - 5x + 3 = 0.", "x = 1/2, x = 3", "x = 1/2 does not satisfy"),
        ("Solve 2x^2 - 5x + 3 = 0.", "x = 1 or x = 3/2", None),
        ("Solve 2(x − 3) = 4x + 2.", "x = -4", None),
        ("Solve 0.5x + 1.2 = 2.2.", "x = 2", None),  # decimals as written, exactly
        ("Solve 0.5x + 1.2 = 2.2.", "x = 2.1", "x = 21/10 does not satisfy"),
        ("Solve 6/x = 3.", "x = 0", "x = 0 makes 6/x = 3 divide by zero"),
        ("Solve x^2 = 5.", "x = ±√5", None),  # not exact: left to the solver
        ("Solve x(x - 3) = 0.", "0 and 3", None),
        (r"Solve \(\frac{3}{2}x + \frac{5}{2} = \frac{7}{2}\)", r"\frac{2}{3}", None),
        (r"Solve \(\frac{3}{2}x + \frac{5}{2} = \frac{7}{2}\)", "x = 8/9", "x = 8/9 does not"),
        ("Solve x(x - 3) = 0.", "x = 3", None),  # a root missing is the solver's to notice
        ("Solve 2x = 8.", "2x = 8, so x = 4", None),  # the values given to x, when it names x
        ("Solve 2x = 8.", "2x = 8, so x = 3", "x = 3 does not"),
        ("Solve x^2 = 4.", "x = -2 or x = 2", None),
    ],
)
def test_substitution_finds_wrong_values(problem, stated, wrong):
    reason = failed_substitution(problem, stated)
    assert (reason is None) == (wrong is None), reason
    assert wrong is None or reason.startswith(wrong)


def test_question_for_a_structured_answer_fills_the_template():
    rule = CheckRule("Solve: {problem}", "answer", CHECK_INSTRUCTIONS, 3)
    text = json.dumps({"problem": "2x = 8", "answer": "x = 4", "level": 2})
    assert question_for(rule, text, "Write one") == ("Solve: 2x = 8", "x = 4")
    # A field left out (optional in the schema) reads as empty rather than failing the row.
    assert question_for(rule, json.dumps({"answer": "x = 4"}), "Write one") == ("Solve: ", "x = 4")
    # {question} is the row's question, unless the answer has a field of that name.
    asked = CheckRule("{question}: {answer}", "answer", CHECK_INSTRUCTIONS, 3)
    assert question_for(asked, text, "Write one") == ("Write one: x = 4", "x = 4")
    named = json.dumps({"question": "own", "answer": "1"})
    assert question_for(asked, named, "Write one") == ("own: 1", "1")
    # Without a schema: the row's question (the default) or the whole answer, and the
    # answer's final line compared.
    again = CheckRule("{question}", "", CHECK_INSTRUCTIONS, 2)
    assert question_for(again, "work\nAnswer: 7", "What is 3 + 4?") == ("What is 3 + 4?", "7")
    whole = CheckRule("Check this: {answer}", "", CHECK_INSTRUCTIONS, 2)
    assert question_for(whole, "work\nx = 7", "Q") == ("Check this: work\nx = 7", "x = 7")


SCHEMA_TOML = """
[response_format]
name = "p"
schema = { type = "object", properties = { problem = { type = "string" }, answer = { type = "string" }, level = { type = "string", enum = ["easy"] } }, required = ["problem", "answer", "level"] }
"""  # noqa: E501


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ('question = "{riddle}"\ncompare = "answer"', "it names ['riddle']"),
        ('question = "no field"\ncompare = "answer"', "it names none"),
        ('question = "{problem}"\ncompare = "score"', "compare should be one of"),
        ('compare = "answer"', "needs question"),
        ('question = "{problem}"\ncompare = "answer"\nattempts = 0', "attempts should be 1 to 10"),
        ('question = "{problem}"\ncompare = "answer"\nattempts = "3"', "attempts should be a int"),
        ('question = "{problem}"\ncompare = "answer"\nretries = 2', "unknown key(s) retries"),
        ('question = "{problem"\ncompare = "answer"', "question '{problem'"),
        ('question = "{problem}"\ncompare = "answer"\nnew = "yes"', "new should be true or"),
        ('question = "{question}"\ncompare = "answer"\nnew = true', "not {question} (the request"),
    ],
)
def test_check_errors_name_the_file_and_key(tmp_path, check, message):
    path = tmp_path / "p.toml"
    path.write_text(f"{SCHEMA_TOML}\n[check]\n{check}\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and "check" in str(err.value)
    assert message in str(err.value)


def test_check_without_a_schema_solves_the_question_again(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[check]\n")
    assert load_profile(path).check == {
        "question": "{question}",
        "compare": "",
        "instructions": CHECK_INSTRUCTIONS,
        "attempts": 3,
        "new": False,
    }
    path.write_text('[check]\ncompare = "answer"\n')
    with pytest.raises(ConfigError, match="compare needs a response_format"):
        load_profile(path)


class Scripted:
    """A provider that answers from a list and records what it was asked (the loop's own
    logic only; real providers answer the end-to-end tests below)."""

    def __init__(self, turns: list[Turn]) -> None:
        self.turns = turns
        self.asked: list[tuple[str, str]] = []  # (thread id, question)
        self.opened = 0

    def open_thread(self, retrier):
        self.opened += 1
        return Thread(id=f"t{self.opened}")

    def ask(self, thread, row, retrier, tools):
        self.asked.append((thread.id, row.question))
        return self.turns.pop(0)


def turn(answer: str, prompt: int, status: str = COMPLETED) -> Turn:
    return Turn(status, answer, usage=Usage(prompt_tokens=prompt, completion_tokens=1))


def run_check(answers: list[Turn], solutions: list[Turn], attempts: int = 3):
    rule = CheckRule("{problem}", "answer", CHECK_INSTRUCTIONS, attempts)
    writer, solver = Scripted(answers[1:]), Scripted(solutions)
    thread = Thread(id="main")
    row = Row(0, "r1", "write a problem")
    check = Check(rule, solver)
    retrier = Retrier(1, 1e9, 1)
    result = checked(check, writer, thread, row, answers[0], retrier, ToolLog(), lambda t: True)
    return result, writer, solver


def problem(text: str, answer: str) -> str:
    return json.dumps({"problem": text, "answer": answer})


EGGS = "A box holds {} rows of {} eggs. How many eggs are in it?"


def test_a_disagreeing_answer_is_asked_for_again_in_the_same_thread():
    first, second = EGGS.format(4, 2), EGGS.format(3, 3)
    answers = [turn(problem(first, "9"), 10), turn(problem(second, "9 eggs"), 20)]
    solutions = [turn("4 * 2 = 8\nAnswer: 8", 100), turn("Answer: 9", 200)]
    result, writer, solver = run_check(answers, solutions)
    assert result.status == COMPLETED and json.loads(result.answer)["problem"] == second
    assert [q for _, q in solver.asked] == [first, second]
    assert solver.opened == 2, "every solve starts a conversation of its own"
    (thread_id, again), = writer.asked  # fmt: skip
    assert thread_id == "main" and "gave '8', not '9'" in again
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (330, 4)


def test_a_wrong_root_is_caught_by_substitution_without_asking_the_solver():
    answers = [turn(problem("Solve 2x = 8", "x = 3"), 1), turn(problem("Solve 3x = 9", "3"), 1)]
    result, writer, solver = run_check(answers, [turn("Answer: x = 3", 1)])
    assert result.status == COMPLETED
    assert (
        "x = 3 does not satisfy 2x = 8 (the left side is 6, the right side 8)"
        in (writer.asked[0][1])
    )
    assert [q for _, q in solver.asked] == ["Solve 3x = 9"], "only the second needed solving"


def test_no_pass_after_the_last_attempt_fails_the_row_with_the_reason():
    answers = [turn(problem("Solve 2x = 8", "x = 5"), 1), turn(problem(EGGS.format(2, 4), "8"), 1)]
    result, writer, _ = run_check(answers, [turn("partial", 1, INCOMPLETE)], attempts=2)
    assert result.status == FAILED
    assert result.error == (
        "check: solving the problem again ended incomplete, not at '8' "
        "(2 answer(s) written, none passed)"
    )
    assert "x = 5 does not satisfy 2x = 8" in writer.asked[0][1]
    assert result.usage.prompt_tokens == 3


def test_a_new_problem_must_not_be_the_example_nor_repeat_the_thread():
    rule = CheckRule("{problem}", "answer", CHECK_INSTRUCTIONS, 2, new=True)
    twice = [turn(problem("Solve 2x + 1 = 7.", "x = 3"), 1), turn(problem("2x+1=7", "3"), 1)]
    writer = Scripted(twice)
    check = Check(rule, Scripted([turn("Answer: 3", 1), turn("Answer: 4", 1)]))
    retrier, ok = Retrier(1, 1e9, 1), lambda t: True
    request = Row(0, "r1", "'3x + 11 = 14' 같은 일차방정식 문제를 하나 만들어 주세요.")
    first = turn(problem("Solve 3x+11 = 14.", "x = 1"), 1)
    result = checked(check, writer, Thread("t"), request, first, retrier, ToolLog(), ok)
    assert result.status == COMPLETED and "2x + 1 = 7" in result.answer
    assert "3x+11 = 14 is the request's own example, not a new problem" in writer.asked[0][1]
    # A later row of the thread writes the same equation again: not new either.
    again = turn(problem("Solve 2x + 1 = 7", "x = 3"), 1)
    later = checked(check, writer, Thread("t"), Row(1, "r2", "Another."), again, retrier,
                    ToolLog(), ok)  # fmt: skip
    assert later.status == FAILED and "2x+1 = 7 repeats the problem of row r1" in later.error
    assert len(check.solver.asked) == 1, "a repeat is refused before it is solved"


def test_a_worksheet_answer_that_fails_is_asked_for_again_not_a_new_problem():
    rule = CheckRule("{question}", "", CHECK_INSTRUCTIONS, 2)
    assert not rule.writes_problems
    writer = Scripted([turn("2x = 8, so x = 4", 1)])
    check = Check(rule, Scripted([turn("Answer: x = 4", 1)]))
    row = Row(0, "w1", "Solve 2x = 8.")
    first = turn("Divide by 2.\nx = 3", 1)
    result = checked(check, writer, Thread("t"), row, first, Retrier(1, 1e9, 1), ToolLog(),
                     lambda t: True)  # fmt: skip
    assert result.status == COMPLETED and result.answer.endswith("x = 4")
    (_, again), = writer.asked  # fmt: skip
    assert again == (
        "Checked: x = 3 does not satisfy 2x = 8 (the left side is 6, the right side 8). "
        "Answer 'Solve 2x = 8.' again, checking each step."
    )
    assert [q for _, q in check.solver.asked] == ["Solve 2x = 8."]


def test_an_answer_that_did_not_complete_is_not_checked():
    answers = [turn("half", 7, INCOMPLETE)]
    result, _, solver = run_check(answers, [])
    assert result.status == INCOMPLETE and solver.asked == []
    assert result.usage.prompt_tokens == 7


# End to end: the double's structured answer is "NAME: [turn N] answer: QUESTION" for every
# string field, and it answers the solver's question with "[turn 1] answer: QUESTION".
PROFILE = SCHEMA_TOML + '\n[check]\nquestion = "{problem}"\ncompare = "{compare}"\n'
SCHEMA = {
    "type": "object",
    "properties": {
        "problem": {"type": "string"},
        "answer": {"type": "string"},
        "level": {"type": "string", "enum": ["easy"]},
    },
    "required": ["problem", "answer", "level"],
}


QUESTION = "Write a problem about 7"


def run_job(tmp_path, api, compare: str, args=(), broker: str = "", rows=(("1", "", QUESTION),)):
    profile = tmp_path / "p.toml"
    profile.write_text(PROFILE.replace("{compare}", compare))
    sheet = write_csv(tmp_path / "sheet.csv", ["id", "thread", "question"], [*map(list, rows)])
    out = tmp_path / "out.csv"
    env = base_env(tmp_path, api)
    if broker:  # the workers fixture's: they run the job
        env["ASKBATCH_BROKER_URL"] = broker
    return askbatch(
        ["run", str(sheet), "-o", str(out), "--assistant", str(profile), *args], env, out
    )


@pytest.mark.parametrize("provider", ["responses", "chat"])
def test_an_agreeing_answer_completes_and_counts_both_requests(provider, tmp_path, api):
    check_agreeing_row(run_job(tmp_path, api, "answer", ["--provider", provider]))


def test_a_check_runs_on_distributed_workers_too(tmp_path, api, workers, redis_server):
    result = run_job(tmp_path, api, "answer", broker=redis_server.url)
    assert "on workers via redis:" in result.stderr.splitlines()[0], result.stderr
    check_agreeing_row(result)


def check_agreeing_row(result) -> None:
    assert result.code == 0, result.stderr
    (row,) = result.rows()
    question = QUESTION
    written = json.dumps(structured_answer(SCHEMA, question, 1), ensure_ascii=False)
    assert row["status"] == "completed" and row["answer"] == written
    solved = answer_for(f"problem: {answer_for(question, 1)}", 1)
    generation = usage_for([question], written)
    solve = usage_for([CHECK_INSTRUCTIONS, f"problem: {answer_for(question, 1)}"], solved)
    assert int(row["prompt_tokens"]) == generation[0] + solve[0]
    assert int(row["completion_tokens"]) == generation[1] + solve[1]


def test_answers_that_never_agree_fail_the_row_after_every_attempt(tmp_path, api):
    # Compared with a field that never holds a number, no solution can agree.
    rows = [("1", "T", QUESTION), ("2", "T", "And another")]
    result = run_job(tmp_path, api, "level", rows=rows)
    assert result.code == 1, result.stderr
    row, later = result.rows()
    assert row["status"] == "failed" and row["error"].startswith("check: solving the problem")
    assert row["error"].endswith("not 'easy' (3 answer(s) written, none passed)"), row["error"]
    # The last of the three answers is the row's: written in the third turn of its thread.
    assert json.loads(row["answer"])["problem"].startswith("problem: [turn 3]")
    # As after any turn that failed, the thread's next turn is not asked.
    assert later["status"] == "skipped" and later["prompt_tokens"] in ("", "0"), later


@pytest.mark.parametrize("args", [["--batch"], ["--provider", "assistants"]])
def test_a_check_is_refused_where_it_cannot_ask_again(args, tmp_path, api):
    result = run_job(tmp_path, api, "answer", args)
    assert result.code == 2, result.stderr
    assert "[check] cannot be used with" in result.stderr
    assert "Traceback" not in result.stderr and not result.output.exists()


def test_a_spending_hold_covers_every_request_a_check_may_make(tmp_path):
    from worker.limits import spending
    from worker.models import JobSpec

    path = tmp_path / "p.toml"
    path.write_text(f"{SCHEMA_TOML}\n[check]\nquestion = '{{problem}}'\ncompare = 'answer'\n")
    checked_profile = load_profile(path).to_json()
    row = Row(index=0, id="1", question="Write a problem about 7")
    plain = JobSpec(job_id="j", provider="responses", model="gpt-5-mini", answer_tokens=2000)
    with_check = JobSpec(**{**plain.to_json(), "profile": checked_profile})
    assert spending.hold_for(plain, row, None) > 0
    # Three answers at most, each solved once: six requests' worth.
    assert spending.hold_for(with_check, row, None) == 6 * spending.hold_for(plain, row, None)


def test_the_estimate_counts_the_requests_a_check_may_make(tmp_path, api):
    from tests.test_spending import M
    from worker import tokens

    profile = tmp_path / "p.toml"
    profile.write_text(PROFILE.replace("{compare}", "answer"))
    sheet = write_csv(tmp_path / "s.csv", ["question"], [[QUESTION]])
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."gpt-5-mini"]\ninput = 1\noutput = 10\n')
    args = ["estimate", str(sheet), "--assistant", str(profile), "--prices", str(prices)]
    run = askbatch([*args, "--answer-tokens", "100"], base_env(tmp_path, api), tmp_path / "x")
    assert run.code == 0, run.stderr
    assert "the profile's [check] makes 2–6 requests a row" in run.stdout
    # One answer's cost (the question +3, +3 for the reply, no instructions), 2 to 6 times.
    one = (tokens.count([QUESTION], "gpt-5-mini")[0] + 6 + 100 * 10) / M
    assert f"${2 * one:,.6f} – ${6 * one:,.6f}" in run.stdout, run.stdout


def test_a_worksheet_without_a_schema_is_answered_twice_and_compared(tmp_path, api):
    """The default check of a free-text profile: the row's question solved again; a later
    turn of a thread, whose question needs the thread, by substitution only."""
    profile = tmp_path / "p.toml"
    profile.write_text("[check]\n")
    first, later = "What is 6 * 7?", "And 7 * 8?"
    sheet = write_csv(tmp_path / "s.csv", ["thread", "question"], [["T", first], ["T", later]])
    out = tmp_path / "out.csv"
    args = ["run", str(sheet), "-o", str(out), "--assistant", str(profile), "--provider", "chat"]
    result = askbatch(args, base_env(tmp_path, api), out)
    assert result.code == 0, result.stderr
    row, next_row = result.rows()
    answer = answer_for(first, 1)
    assert row["status"] == "completed" and row["answer"] == answer
    generation = usage_for([first], answer)
    solve = usage_for([CHECK_INSTRUCTIONS, first], answer)
    assert int(row["prompt_tokens"]) == generation[0] + solve[0]
    assert int(row["completion_tokens"]) == generation[1] + solve[1]
    second = answer_for(later, 2)
    assert next_row["status"] == "completed" and next_row["answer"] == second
    alone = usage_for([first, answer, later], second)
    assert (int(next_row["prompt_tokens"]), int(next_row["completion_tokens"])) == alone
