# The askbatch image: used by docker-compose for workers and for submitting jobs.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY jobs ./jobs
RUN pip install --no-cache-dir .
COPY data ./data
CMD ["askbatch", "worker"]
