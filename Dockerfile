# The gateway's image (docs/contract.md §15; README "Deploy"). Any Debian-based image with
# Python >= 3.11 and venv will do as the base, e.g. --build-arg BASE_IMAGE=debian:bookworm-slim
# with python3-venv installed (scripts/container-check.sh builds on one made with mmdebstrap).
ARG BASE_IMAGE=python:3.12-slim-bookworm

# Stage 1, the virtualenv: the runtime requirements only. Wheels ship their compiled modules with
# debug information (54 MB of the 116); stripped they weigh 7 MB. pip (and the setuptools older
# venvs bring) leave too: nothing runs them. The vendored libraries in *.libs/ stay untouched.
FROM ${BASE_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools wheel \
 && find /opt/venv -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
 && /opt/venv/bin/python -c "import argon2, psycopg, quart, flask, sqlalchemy, uvicorn, uvloop, zstandard"

# Stage 2, the image: the base, the virtualenv (its own layer: a code change does not rebuild it),
# the code.
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY --from=venv /opt/venv /opt/venv

# The state (SQLite database, generated secret key) lives on the volume /data, owned by the
# unprivileged user the gateway runs as; the code stays root's, read-only to it.
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin seadragon \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data

WORKDIR /app
COPY pyproject.toml asgi.py wsgi.py ./
COPY common ./common
COPY admin_app ./admin_app
COPY proxy_app ./proxy_app
COPY simulator ./simulator
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY deploy/entrypoint.sh /usr/local/bin/seadragon-entrypoint
RUN python3 -m compileall -q /app

ENV SEADRAGON_HOST=0.0.0.0 \
    SEADRAGON_PORT=8080 \
    SEADRAGON_INSTANCE_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001

# No curl in slim images: the standard library asks /ready (200 only when the database answers
# and a backend is healthy; 503 from the moment shutdown begins).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request as r\ntry:\n    r.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('SEADRAGON_PORT', '8080'), timeout=4)\nexcept Exception as exc:\n    sys.exit(f'not ready: {exc}')"]

# Exec form, and the script execs: SIGTERM reaches the gateway, which drains and exits 0 (§10).
ENTRYPOINT ["/usr/local/bin/seadragon-entrypoint"]
CMD ["gateway"]
