"""A module whose import leaves a mark: the file ASKBATCH_TEST_IMPORT_MARK names. A profile
uploaded to the page names it as a tool, and the test checks that the server imported nothing."""

import os
from pathlib import Path

if mark := os.environ.get("ASKBATCH_TEST_IMPORT_MARK"):
    Path(mark).write_text("imported")


def anything(**_: object) -> str:
    return "called"
