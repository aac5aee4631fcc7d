# Local stand-in for prom/prometheus:v2.42.0 from Debian's prometheus 2.42, for machines without a registry.
# Same layout as the official image: /bin/prometheus as entrypoint (/bin is /usr/bin in bookworm), config in /etc/prometheus, data in
# /prometheus, user nobody, and a wget for healthchecks (the official image has busybox's).
ARG STANDIN_BASE=mlops-recipes/debian-standin:bookworm
FROM ${STANDIN_BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus /etc/prometheus && chown -R nobody:nogroup /prometheus \
    && printf 'global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ["localhost:9090"]\n' > /etc/prometheus/prometheus.yml
USER 65534:65534
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
LABEL org.opencontainers.image.description="local stand-in for prom/prometheus:v2.42.0 (Debian prometheus)"
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
