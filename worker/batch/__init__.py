"""The Batch API route (`--batch`): rows become lines of JSONL files, files become batches,
batches' output and error files become row results.

`lines.py` builds the lines and files, `records.py` keeps the job's batches in the store,
`results.py` turns a line that came back into a row's result, `rounds.py` says which rows
are due (one turn of each thread per round, retries), `toolrounds.py` runs function tools
between rounds, `api.py` holds the Files and Batches calls, `reading.py` follows batches and
reads those that ended, `sending.py` submits the due rows, and `looks.py` is the one
idempotent look at a job that the run process (embedded) or a Celery task (distributed,
`chain.py`) repeats until every row has a result.
"""
