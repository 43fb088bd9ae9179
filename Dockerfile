# The askbatch image: used by docker-compose for workers and for submitting jobs.
FROM python:3.11-slim
WORKDIR /app
# constraints.txt: the versions the tests passed with, so a new upstream release cannot break it.
COPY pyproject.toml README.md constraints.txt ./
COPY worker ./worker
COPY jobs ./jobs
# EXTRAS=local (the local-model service) compiles llama.cpp: a compiler, and a few minutes.
ARG EXTRAS=""
RUN if [ -n "$EXTRAS" ]; then \
      apt-get update && apt-get install -y --no-install-recommends build-essential \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && pip install --no-cache-dir -c constraints.txt ".${EXTRAS:+[$EXTRAS]}"
COPY data ./data
CMD ["askbatch", "worker"]
