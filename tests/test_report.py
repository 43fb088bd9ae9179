"""`askbatch report` on fixture answers CSVs: the summary's figures by hand, several files,
CSVs from before cost_usd, and a self-contained HTML page with its four charts."""

from __future__ import annotations

import re

import pytest

from jobs.cli import main
from tests.conftest import write_csv
from worker.models import RESULT_COLUMNS

# Input columns id, question and model (so ours is written askbatch_model), then ours.
HEADER = [
    "id",
    "question",
    "model",
    *[f"askbatch_{c}" if c == "model" else c for c in RESULT_COLUMNS],
]

# id, question, status, prompt, completion, cached, reasoning, cost, model, latency, attempts
ROWS = [
    ("a", "first", "completed", 100, 50, 20, 10, "0.000300000", "gpt-5-mini", 1.0, 1),
    ("b", "<script>alert(1)</script>", "completed", 200, 100, 0, 0, "0.001000000", "gpt-4o", 2, 3),
    ("c", "third", "failed", 10, 0, 0, 0, "0.000010000", "gpt-5-mini", 3.0, 2),
    ("d", "fourth", "completed", 40, 40, 0, 0, "", "mystery-model", 4.0, 1),
    ("e", "", "skipped", 0, 0, 0, 0, "", "", 0.0, 0),
    ("f", "sixth", "completed", 30, 30, 0, 0, "0.000000000", "llama3.2", 5.0, 1),
    ("g", "seventh", "pending", "", "", "", "", "", "", "", ""),
]  # fmt: skip


def answers_csv(path, rows=ROWS, drop=()):
    out = []
    for rid, q, status, p, c, cached, reasoning, cost, model, lat, att in rows:
        total = p + c if p != "" else ""
        cells = {
            "status": status, "answer": f"answer to {q}" if status == "completed" else "",
            "error": "boom" if status == "failed" else "", "prompt_tokens": p,
            "completion_tokens": c, "total_tokens": total, "cached_tokens": cached,
            "reasoning_tokens": reasoning, "cost_usd": cost, "model": model, "thread_id": "",
            "run_id": "", "latency_s": lat, "attempts": att, "tool_calls": "",
        }  # fmt: skip
        out.append([rid, q, "input-model-cell", *[cells.get(k, "") for k in RESULT_COLUMNS]])
    header = list(HEADER)
    for name in drop:
        i = header.index(name)
        header.pop(i)
        for r in out:
            r.pop(i)
    return write_csv(path, header, out, encoding="utf-8-sig")


def test_summary_figures_match_the_hand_computed_ones(tmp_path, capsys):
    path = answers_csv(tmp_path / "a.answers.csv")
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "6 of 7 rows: 4 completed, 1 failed, 1 skipped, 1 pending" in out
    # prompt 100+200+10+40+30, completion 50+100+0+40+30
    assert "tokens: 380 prompt (20 cached) + 220 completion (10 reasoning) = 600" in out
    # 0.0003 + 0.001 + 0.00001 + 0 (llama3.2 free); mystery-model is unpriced, not free
    assert "cost: $0.001310 + 1 row unpriced" in out
    assert re.search(r"gpt-4o\s+1 row\s+300 tokens\s+\$0\.001000", out), out
    assert re.search(r"gpt-5-mini\s+2 rows\s+160 tokens\s+\$0\.000310", out), out
    assert re.search(r"mystery-model\s+1 row\s+80 tokens\s+unpriced", out), out
    # latencies of the 5 rows sent: 1..5 → p50 3, p95 4 + 0.8 x (5 - 4), max 5
    assert "latency: p50 3.00s, p95 4.80s, max 5.00s (5 rows sent)" in out
    assert "retries: 3 (on 2 rows)" in out  # (3-1) + (2-1)
    costliest = out.split("costliest rows:")[1].splitlines()[1:4]
    assert ["row 2 (id b)" in costliest[0], "row 1 (id a)" in costliest[1]] == [True, True]
    assert "row 3 (id c)" in costliest[2]
    assert "unpriced (mystery-model)" in out


def test_several_files_are_grouped_by_file_with_a_total(tmp_path, capsys):
    a = answers_csv(tmp_path / "a.csv")
    b = answers_csv(tmp_path / "b.csv", rows=ROWS[:2])
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    blocks = out.split("== ")
    assert [blk.split(" ==")[0] for blk in blocks[1:]] == [str(a), str(b), "all 2 files"]
    assert "2 of 2 rows: 2 completed" in blocks[2]
    assert "cost: $0.001300\n" in blocks[2]
    assert "8 of 9 rows: 6 completed" in blocks[3]
    assert "cost: $0.002610 + 1 row unpriced" in blocks[3]  # 0.00131 + 0.0013


def test_a_csv_from_before_cost_usd_is_priced_now(tmp_path, capsys):
    path = answers_csv(tmp_path / "old.csv", drop=["cost_usd"])
    prices = tmp_path / "p.toml"
    prices.write_text('[models."gpt-5-mini"]\ninput = 1\noutput = 2\n')
    assert main(["report", str(path), "--prices", str(prices)]) == 0
    out = capsys.readouterr().out
    # gpt-5-mini rows: (100 x 1 + 50 x 2) + (10 x 1) = 210 per million; gpt-4o from
    # genai-prices; llama3.2 and mystery-model are unknown at OpenAI, so unpriced.
    assert re.search(r"gpt-5-mini\s+2 rows\s+160 tokens\s+\$0\.000210", out), out
    assert "no cost_usd column" in out
    assert "unpriced (llama3.2, mystery-model)" in out


def test_html_report_is_self_contained_with_four_charts(tmp_path, capsys):
    a = answers_csv(tmp_path / "a.csv")
    b = answers_csv(tmp_path / "b.csv", rows=ROWS[:3])
    html = tmp_path / "report.html"
    assert main(["report", str(a), str(b), "--html", str(html)]) == 0
    page = html.read_text(encoding="utf-8")
    for label in ("cost by model", "rows by status", "tokens per row", "latency", "cost by file"):
        assert f"aria-label='{label}'" in page, label
    assert page.count("<svg") == 2 + 2 * 4  # overview: by file and by model; 4 per file
    assert "<script" not in page.lower(), "the question's <script> is shown as text"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Nothing is fetched: no src or href, no stylesheet link; the only URL is SVG's namespace.
    assert not re.search(r"\b(src|href)\s*=", page)
    assert set(re.findall(r"https?://[^'\" ]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<rect" in page and "$0.001310" in page and "unpriced" in page
    again = main(["report", str(a), "--html", str(html)])
    assert again == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["question", "note"], [["q", "n"]], "not an askbatch answers CSV"),
        (
            HEADER,
            [["1", "q", "m", "completed", "", "", "lots", *[""] * (len(HEADER) - 7)]],
            "row 2",
        ),
    ],
)
def test_files_that_are_not_answers_exit_2(tmp_path, capsys, header, rows, message):
    path = write_csv(tmp_path / "x.csv", header, rows)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing.csv")]) == 2


def test_a_file_read_in_chunks_sums_the_same_and_names_the_right_row(tmp_path, capsys, monkeypatch):
    # A question that spans lines must not shift which row a chunk starts at.
    rows = [(r[0], f'{r[1]}\nsecond line, "quoted"', *r[2:]) for r in ROWS]
    path = answers_csv(tmp_path / "a.csv", rows=rows)
    assert main(["report", str(path)]) == 0
    whole = capsys.readouterr().out
    monkeypatch.setattr("jobs.report.answers.CHUNK", 2)
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out == whole
    assert "row 2 (id b)" in whole and "second line" in whole
    # A bad cell in the third chunk is named by its own row (row 6: 5 data rows before it).
    bad = [list(r) for r in ROWS]
    bad[4][9] = "soon"
    path = answers_csv(tmp_path / "bad.csv", rows=[tuple(r) for r in bad])
    assert main(["report", str(path)]) == 2
    assert "row 6, column 'latency_s': 'soon' is not a number" in capsys.readouterr().err
