"""Bad numbers and huge lines at the command line (issue 23): the real `askbatch` of the runtime
environment, each case one message and exit 2, never a traceback; a line longer than a row can
be is refused while it is read, with the command's memory bounded by the cell limit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, askbatch, askbatch_command, base_env, write_csv

BAD_PRICES = ["1e999999999", "-1", "nan", "inf", "100001", "true", '"lots"']


PRICE_FILES = [
    *[(f"input = {value}\noutput = 2", "models.'gpt-5-mini': input = ") for value in BAD_PRICES],
    (
        'input = 1\noutput = 2\n[models."gpt-5-mini".batch]\ninput = 1\noutput = 1e999999999',
        "models.'gpt-5-mini'.batch: output = ",
    ),
]


@pytest.mark.parametrize(("table", "where"), PRICE_FILES)
def test_a_price_must_be_a_sane_number(table, where, api, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text(f'[models."gpt-5-mini"]\n{table}\n')
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    env = base_env(tmp_path, api)
    for command in (["estimate"], ["run", "-o", str(tmp_path / "a.csv")]):
        done = askbatch([*command, "--prices", str(prices), str(sheet)], env, tmp_path / "a.csv")
        assert done.code == 2, done.stderr
        assert "Traceback" not in done.stderr and "Overflow" not in done.stderr
        assert where in done.stderr and "is not a price" in done.stderr, done.stderr
    assert not (tmp_path / "a.csv").exists()


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--max-cost", "1e999999999", "not an amount in USD"),
        ("--max-cost", "-3", "not an amount in USD"),
        ("--answer-tokens", "99999999999999999999", "0 to 10,000,000 tokens"),
    ],
)
def test_an_amount_must_be_a_sane_number(flag, value, words, api, tmp_path):
    sheet = write_csv(tmp_path / "s.csv", ["question"], [["hi"]])
    env = base_env(tmp_path, api)
    for command in (["estimate"], ["run", "-o", str(tmp_path / "a.csv")]):
        done = askbatch([*command, flag, value, str(sheet)], env, tmp_path / "a.csv")
        assert done.code == 2, done.stdout[-300:] + done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stdout) < 10_000, "no number with a billion digits"
    assert not (tmp_path / "a.csv").exists()


# Runs the command given, then prints its peak memory (KB, from its rusage) and exits as it did.
PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def test_a_huge_line_is_refused_while_it_is_read(api, tmp_path):
    sheet = tmp_path / "huge.csv"
    line_mb = 300
    with sheet.open("w") as f:
        f.write("id,question\n1,")
        for _ in range(line_mb):
            f.write("x" * 1_000_000)
        f.write("\n2,fine\n")
    env = base_env(tmp_path, api)
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *askbatch_command(), "estimate", str(sheet)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert done.returncode == 2
    assert "row 1 is longer than 400,000 characters" in done.stderr, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert peak_mb < line_mb / 2, f"peak {peak_mb:.0f} MB for a {line_mb} MB line"
