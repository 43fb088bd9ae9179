"""Assistant profiles, the tool box and structured answers, as plain functions."""

from pathlib import Path

import pytest

from worker.builtin_tools import evaluate
from worker.errors import ConfigError
from worker.profile import Profile, load_profile
from worker.structured import split_answer
from worker.tools import ToolBox, ToolLog

DATA = Path(__file__).resolve().parent.parent / "data"


def test_sample_profile_loads_and_round_trips():
    profile = load_profile(DATA / "practice.toml")
    assert profile.model == "gpt-5-mini" and profile.temperature is None
    assert [t.name for t in profile.tools] == ["evaluate"]
    assert profile.answer_columns() == [
        "answer.problem", "answer.solution", "answer.answer", "answer.difficulty",
    ]  # fmt: skip
    assert Profile.from_json(profile.to_json()) == profile


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model = 3", "model should be a str"),
        ("colour = 'red'", "unknown key(s) colour"),
        ("temperature = 'hot'", "temperature should be a number"),
        ("[[tools]]\nname = 'x'", 'needs function = "module:callable"'),
        ("[[tools]]\nfunction = 'nocolon'", "module:callable"),
        ("[response_format]\nschema = { type = 'array' }", 'type = "object"'),
        ("[response_format]\nschema = { type = 'object', required = 5 }", "invalid JSON schema"),
        ("model = ", "not valid TOML"),
    ],
)
def test_profile_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_profile_and_unimportable_tool(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "nope.toml")
    path = tmp_path / "p.toml"
    path.write_text("[[tools]]\nfunction = 'no_such_module_xyz:f'\n")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz:f'"):
        ToolBox(load_profile(path).tools)


def test_toolbox_reports_failures_to_the_model_and_the_row():
    box = ToolBox(load_profile(DATA / "practice.toml").tools)
    log = ToolLog()
    assert box.call("evaluate", '{"expression": "6*7"}', log) == "42"
    assert "ZeroDivisionError" in box.call("evaluate", '{"expression": "1/0"}', log)
    assert "bad arguments" in box.call("evaluate", "{not json", log)
    assert "no tool named" in box.call("shell", "{}", log)
    assert log.cell() == "evaluate x3, shell x1"
    assert len(log.errors) == 3 and all(e.startswith("tool ") for e in log.errors)


def test_evaluate_is_arithmetic_only():
    assert evaluate("(20 + 10) / 6") == "5"
    assert evaluate("2^10 + sqrt(16)") == "1028"
    assert evaluate("7/2") == "3.5"
    for bad in ("__import__('os')", "open('x')", "(1).__class__", "9**99999"):
        with pytest.raises(ValueError):
            evaluate(bad)
    # A power of a power: minutes of CPU and a number no one can print; refused at once.
    for huge in ("((9**999)**999)**99", "(9**999)**999", "(9**999*9**999)**50"):
        with pytest.raises(ValueError, match="too large"):
            evaluate(huge)


SCHEMA = {
    "type": "object",
    "required": ["problem", "difficulty"],
    "properties": {
        "problem": {"type": "string"},
        "difficulty": {"enum": ["easy", "hard"]},
        "steps": {"type": "array"},
    },
}


def test_split_answer_into_columns():
    cells, error = split_answer('{"problem": "x+1=2", "difficulty": "easy", "steps": [1]}', SCHEMA)
    assert error == ""
    assert cells == {"answer.problem": "x+1=2", "answer.difficulty": "easy", "answer.steps": "[1]"}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("not json {", "answer is not JSON"),
        ('{"problem": 0}', "does not match the schema"),
        ('{"problem": "p", "difficulty": "medium"}', "at difficulty"),
        ("[1, 2]", "does not match the schema"),
    ],
)
def test_answers_that_do_not_match_are_errors(answer, message):
    cells, error = split_answer(answer, SCHEMA)
    assert cells == {} and message in error
