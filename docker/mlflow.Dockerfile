# MLflow tracking server and model registry: Postgres backend store (psycopg 3), proxied artifacts
# (--serve-artifacts) into /mlartifacts, a volume. MLflow and every dependency are installed at exactly the
# versions of uv.lock (uv.lock is exported as pip constraints), so clients and server always match.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/mlflow.Dockerfile -t mlops-recipes-mlflow .
#
# MLflow's basic-auth app (Flask-WTF, pinned below: not a project dependency) with writer and reader accounts
# made at start by docker/mlflow-accounts.py; docker/mlflow-metrics.py serves the server's metrics to
# Prometheus from a container of its own. Settings: MLFLOW_BACKEND_STORE_URI, MLFLOW_AUTH_DATABASE_URI and the
# account passwords (required), MLFLOW_ALLOWED_HOSTS, MLFLOW_WORKERS; see docker/mlflow-entrypoint.sh.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
# Exports MLflow's /metrics for Prometheus (--expose-prometheus); not a project dependency, so pinned here.
ARG PROMETHEUS_FLASK_EXPORTER_VERSION=0.23.2
# CSRF protection of the basic-auth app (mlflow[auth]); WTForms is its dependency.
ARG FLASK_WTF_VERSION=1.3.0
ARG WTFORMS_VERSION=3.3.2
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"
WORKDIR /build
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    /opt/uv/bin/uv export --locked --no-dev --no-hashes --no-emit-project --no-header --output-file constraints.txt \
    && /opt/uv/bin/uv venv /opt/mlflow \
    && /opt/uv/bin/uv pip install --python /opt/mlflow/bin/python --constraints constraints.txt \
        mlflow "psycopg[binary]" "prometheus-flask-exporter==${PROMETHEUS_FLASK_EXPORTER_VERSION}" \
        "flask-wtf==${FLASK_WTF_VERSION}" "wtforms==${WTFORMS_VERSION}" \
    && /opt/mlflow/bin/python -c "import mlflow, psycopg, flask_wtf; print('mlflow', mlflow.__version__, 'psycopg', psycopg.__version__)"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10002 mlflow \
    && useradd --system --uid 10002 --gid mlflow --create-home --home-dir /home/mlflow --shell /bin/sh mlflow \
    && mkdir -p /mlartifacts /home/mlflow/metrics \
    && chown mlflow:mlflow /mlartifacts /home/mlflow/metrics
COPY --from=build /opt/mlflow /opt/mlflow
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint
COPY docker/mlflow-accounts.py /usr/local/bin/mlflow-accounts
COPY docker/mlflow-metrics.py /usr/local/bin/mlflow-metrics
COPY docker/probe.py /usr/local/bin/probe
ENV PATH=/opt/mlflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
USER 10002:10002
WORKDIR /home/mlflow
VOLUME /mlartifacts
EXPOSE 5000
# A real API call as the reader, not just /health (which skips the Host header check and authentication that
# every client call goes through); the credentials file exists once the accounts are made.
HEALTHCHECK --interval=10s --timeout=15s --start-period=60s --retries=3 \
    CMD ["env", "PROBE_TIMEOUT=14", "probe", "--auth-file", "/home/mlflow/.probe-auth", "http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1"]
ENTRYPOINT ["mlflow-entrypoint"]
