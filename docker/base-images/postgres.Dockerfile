# Local stand-in for postgres:15-bookworm from Debian's postgresql-15, for machines without a registry.
# postgres-entrypoint.sh honours the official image's contract: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB,
# PGDATA, scripts in /docker-entrypoint-initdb.d on first start; password auth for network clients.
ARG STANDIN_BASE=mlops-recipes/debian-standin:bookworm
FROM ${STANDIN_BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 2777 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
LABEL org.opencontainers.image.description="local stand-in for postgres:15-bookworm (Debian postgresql-15)"
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
