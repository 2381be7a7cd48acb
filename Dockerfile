# The spanbench image: both roles of a run on Kubernetes (deploy/k8s/), `spanbench run` as the
# orchestrator and `spanbench worker` as each worker, from one ENTRYPOINT.
#
#   docker build -t spanbench:0.1.0 .
#   docker build -t spanbench:0.1.0-snowflake --build-arg EXTRAS=snowflake .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

# Optional extras of the package, comma-separated: "snowflake" adds the Snowflake connector.
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the install needs (.dockerignore keeps the rest of the tree out of the context):
# pyproject.toml names README.md as the package's readme.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /build \
    && useradd --uid 10001 --user-group --home-dir /runs --create-home --shell /usr/sbin/nologin spanbench

# A numeric USER: Kubernetes' runAsNonRoot can only check a number. /runs is the working
# directory, where each process writes spanbench-runs/<run id>/ (an emptyDir in the pods).
USER 10001:10001
WORKDIR /runs
ENTRYPOINT ["spanbench"]
CMD ["--help"]
