# syntax=docker/dockerfile:1
# cors-handler container image: a venv built in one stage, copied onto a clean base.
#   podman build -t cors-handler .                       (or docker build)
#   podman build --build-arg BASE=localhost/debian-python:bookworm ...   (a locally built base)
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret:
#   podman build --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt ...
# checkov:skip=CKV_DOCKER_7:BASE defaults to python:3.11-slim-bookworm, a pinned version tag; checkov cannot see through the ARG
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY cors_handler ./cors_handler
# Dependencies come pinned from constraints.txt; wheels only, so no compiler is needed.
RUN --mount=type=secret,id=cacert \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi \
    && python3 -m venv /opt/cors-handler \
    && /opt/cors-handler/bin/pip install --only-binary=:all: --constraint constraints.txt . \
    && /opt/cors-handler/bin/pip uninstall --yes pip \
    && /opt/cors-handler/bin/python -m compileall -q /opt/cors-handler

FROM ${BASE}
LABEL org.opencontainers.image.title="cors-handler" \
      org.opencontainers.image.description="CORS preflight service for Traefik-fronted APIs" \
      org.opencontainers.image.licenses="Apache-2.0"
# Read-only root filesystem friendly: no bytecode writes, nothing else written at run time.
ENV PATH=/opt/cors-handler/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/cors-handler /opt/cors-handler
# A fixed high UID/GID with no login and no home: matches the chart's runAsUser.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/opt/cors-handler/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
ENTRYPOINT ["/opt/cors-handler/bin/cors-handler"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
