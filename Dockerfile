# syntax=docker/dockerfile:1
# convserve: build a virtualenv with only the runtime dependencies, then copy it into a slim
# image that runs gunicorn as a non-root user. Migrations are NOT run here: run
# `convserve db upgrade` once per release (docker compose's `migrate` service, the k8s Job).

ARG PYTHON=3.11

FROM python:${PYTHON}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
# A regular (not editable) install of the package and its runtime dependencies, with the onnx
# extra (ONNX uploads are part of the API: without it they would be answered 415); no dev extras.
RUN /opt/venv/bin/pip install ".[onnx]"

FROM python:${PYTHON}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="convserve" \
      org.opencontainers.image.description="Register, inspect and serve CNNs over HTTP"
# /uploads: where a deployment may point TMPDIR for uploads in flight (compose and k8s do), so
# that a 600 MiB weights file is spooled to disk, not to a memory-backed /tmp.
RUN groupadd --system --gid 10001 convserve \
 && useradd --system --uid 10001 --gid convserve --home-dir /app --shell /usr/sbin/nologin convserve \
 && mkdir /uploads && chown 10001:10001 /uploads
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY migrations ./migrations
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py
COPY models ./models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=2 \
    CONVSERVE_MIGRATIONS=/app/migrations \
    PROMETHEUS_MULTIPROC_DIR=/tmp/convserve-metrics
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]
ENTRYPOINT ["gunicorn", "-c", "/app/deploy/gunicorn.conf.py"]
