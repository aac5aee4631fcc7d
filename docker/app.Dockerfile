# The application image: the pipeline (DVC stages, `mlops`), the Prefect server and worker, and the scoring
# service, from one codebase and one locked environment. Which role a container plays is its command
# (docker/entrypoint.sh): serve (default), train, worker, prefect-server, or any command such as `mlops status`.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/app.Dockerfile -t mlops-recipes-app .
#
# Settings come from the environment only (MLFLOW_TRACKING_URI, FEAST_CONFIG, FEAST_REGISTRY_URL,
# FEAST_REDIS_CONNECTION, SERVING_*, ...): the same code as `make run`, see docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the locked environment, without dev dependencies, bytecode compiled ---------------------------
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /app
# Third-party dependencies first: this layer is reused until uv.lock or pyproject.toml change.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    /opt/uv/bin/uv sync --locked --no-dev --no-install-project --no-editable
# Then the library itself, installed (not editable) into the same environment. The wheel holds src/ only: the
# shells (serving/, flows/) are not installed, the runtime stage copies them into /app and puts /app on the path.
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --locked --no-dev --no-editable

# ---- runtime ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --create-home --home-dir /home/mlops --shell /bin/sh mlops \
    && mkdir -p /workspace \
    && chown mlops:mlops /workspace
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
# The pipeline definition and the code DVC hashes as stage dependencies; train and worker containers copy
# them into the workspace volume at start (docker/entrypoint.sh), where DVC keeps its state.
COPY dvc.yaml params.yaml contract.yaml .dvcignore ./
COPY .dvc/config ./.dvc/config
COPY feature_repo ./feature_repo
COPY src ./src
COPY serving ./serving
COPY flows ./flows
# The rollout plan the rollout-plan deployment reads (docs/rollouts.md); the rest of monitoring/ is Prometheus'.
COPY monitoring/rollout-plan.yaml ./monitoring/rollout-plan.yaml
COPY incoming/README.md ./incoming/README.md
COPY docker/entrypoint.sh /usr/local/bin/mlops-entrypoint
COPY docker/probe.py /usr/local/bin/probe
# PYTHONPATH: the shells (serving, flows) are the application in /app, not packages of the environment; any
# process imports them from here whatever its working directory (uvicorn's workers, `docker exec ... python -c`).
# A Prefect flow run puts its working directory, the workspace and its identical copy, first on its own path.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLOPS_WORKSPACE=/workspace \
    PREFECT_HOME=/home/mlops/.prefect \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT=false \
    # The server writes the UI's static files at start: not into the (read-only) environment.
    PREFECT_SERVER_UI_STATIC_DIRECTORY=/home/mlops/.prefect/ui \
    DO_NOT_TRACK=1
# Last, so that a new commit rebuilds no layer above: the commit MLflow runs are tagged with (no .git here).
ARG GIT_COMMIT=unknown
ENV MLOPS_GIT_COMMIT=${GIT_COMMIT}
USER 10001:10001
EXPOSE 8000
# The scoring service's readiness (a champion is loaded); compose gives the other roles their own checks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["probe", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["mlops-entrypoint"]
CMD ["serve"]
