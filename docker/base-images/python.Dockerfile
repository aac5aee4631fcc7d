# Local stand-in for python:3.11-slim-bookworm, for machines that cannot pull from a registry.
# docker/ensure-engine.sh builds it only when the official image is neither present nor pullable.
# Debian bookworm's own Python 3.11 from the base built by debootstrap (STANDIN_BASE), plus the machine's CA
# bundle, which the package index may be reached through. The app Dockerfiles need nothing else of the
# official image: python, venv/ensurepip, a shell and coreutils.
ARG STANDIN_BASE=mlops-recipes/debian-standin:bookworm
FROM ${STANDIN_BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
COPY ca-certificates.crt /usr/local/share/ca-certificates/machine-bundle.crt
ENV SSL_CERT_FILE=/usr/local/share/ca-certificates/machine-bundle.crt \
    PIP_CERT=/usr/local/share/ca-certificates/machine-bundle.crt \
    REQUESTS_CA_BUNDLE=/usr/local/share/ca-certificates/machine-bundle.crt \
    LANG=C.UTF-8
LABEL org.opencontainers.image.description="local stand-in for python:3.11-slim-bookworm (Debian python3.11)"
CMD ["python3"]
