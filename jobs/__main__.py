"""`python -m jobs`: the askbatch command, as `askbatch` runs it."""

from jobs.cli import entry

entry()
