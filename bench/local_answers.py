"""Whether the offline model's answers are right: 12 school-maths questions with one known
answer each, in Korean and English, asked through `askbatch run --provider local` as a user
runs it (the server's own sampling defaults, no profile), scored on the end of each answer.

    python -m bench answers                    # the bundled model
    python -m bench answers --model smollm2    # or any name or GGUF file
    python -m bench answers --instructions "You are a maths tutor."

A row is right when it completed and the closing part of its answer (where the model states
its result) holds every expected value; the table prints each row's verdict and that part, so
a reader can check the scoring. Slow on 2 cores: a few minutes.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (question, patterns that must all appear near the end of a right answer)
QUESTIONS: list[tuple[str, list[str]]] = [
    ("What is 17 * 23?", ["391"]),
    ("Solve for x: 2x - 7 = 9. Show each step.", [r"x\s*=\s*8|boxed\{8\}"]),
    (
        "다음의 방정식을 풀고 싶습니다. '3x + 11 = 14', 수학선생님 도와주실 수 있나요?",
        [r"(?<![-\w])x\s*=\s*1(?![\d./])"],
    ),
    ("What is the derivative of f(x) = x^3 + 2x, and what is f'(1)?", ["5"]),
    ("삼각형의 세 각의 합은 몇 도인가요? 한 문장으로 답해 주세요.", ["180"]),
    ("Factor the quadratic x^2 - 5x + 6, then give both roots.", ["2", "3"]),
    ("1부터 100까지의 자연수의 합은 얼마인가요? 계산 방법을 짧게 설명해 주세요.", ["5050"]),
    ("A rectangle has perimeter 20 and area 24. What are its sides?", ["4", "6"]),
    ("12의 약수를 모두 더하면 얼마인가요?", ["28"]),
    ("What is 15% of 240?", ["36"]),
    (
        "반지름이 3인 원의 넓이는 얼마인가요? π를 사용해 답해 주세요.",
        [r"9\s*\\?pi|9\s*π|28\.27\d*"],
    ),
    ("What is the least common multiple of 6 and 8?", ["24"]),
]
TAIL = 200  # characters at the end of an answer where its result is stated


def right(answer: str, patterns: list[str]) -> bool:
    tail = answer[-TAIL:]
    return all(re.search(rf"(?<![-\d.]){p}(?![\d])", tail) for p in patterns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench answers")
    parser.add_argument("--model", default="", help="name or GGUF file (default: the bundled)")
    parser.add_argument("--instructions", default="", help="system instructions (default none)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="askbatch-answers-") as tmp:
        sheet, out = Path(tmp) / "maths.csv", Path(tmp) / "maths.answers.csv"
        with sheet.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["id", "question"]] + [
                [str(i + 1), q] for i, (q, _) in enumerate(QUESTIONS)
            ])  # fmt: skip
        command = [sys.executable, "-m", "jobs", "run", str(sheet), "-o", str(out), "-q"]
        command += ["--provider", "local", *(["--local-model", args.model] * bool(args.model))]
        command += ["--instructions", args.instructions] * bool(args.instructions)
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        t0 = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if done.returncode not in (0, 1):
            sys.exit(f"askbatch run failed ({done.returncode}):\n{done.stderr}")
        with out.open(encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    score = 0
    for row, (_, patterns) in zip(rows, QUESTIONS, strict=True):
        ok = row["status"] == "completed" and right(row["answer"], patterns)
        score += ok
        tail = " ".join(row["answer"][-90:].split())
        print(f"{row['id']:>2} {'right' if ok else 'WRONG'} {row['status']:10} …{tail}")
    print(f"{score} of {len(QUESTIONS)} right in {wall:.0f}s ({rows[0]['model']})")


if __name__ == "__main__":
    main()
