"""`askbatch serve`: a web page and JSON API to start, follow and collect jobs, a second front
end beside jobs/cli over the same plain functions (see app.py)."""
