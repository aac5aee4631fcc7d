# Local stand-in for redis:7.0-bookworm from Debian's redis-server 7.0, for machines without a registry.
# As in the official image: runs as user redis in /data, protected mode off (the network is the boundary).
ARG STANDIN_BASE=mlops-recipes/debian-standin:bookworm
FROM ${STANDIN_BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
EXPOSE 6379
LABEL org.opencontainers.image.description="local stand-in for redis:7.0-bookworm (Debian redis-server)"
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
