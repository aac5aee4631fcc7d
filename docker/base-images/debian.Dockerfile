# Local stand-in for debian:bookworm-slim, for machines that cannot pull from a registry: the minimal bookworm
# root filesystem that docker/ensure-engine.sh builds with debootstrap (STANDIN_BASE), as it is.
ARG STANDIN_BASE=mlops-recipes/debian-standin:bookworm
FROM ${STANDIN_BASE}
LABEL org.opencontainers.image.description="local stand-in for debian:bookworm-slim (debootstrap minbase)"
CMD ["bash"]
