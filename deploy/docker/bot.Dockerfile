# syntax=docker/dockerfile:1
# The tunebot service image: the webhook/callback service only. It installs the package WITHOUT the `agent`
# extra, so no torch, ms-swift or EvalScope (the service never imports them), and it leaves runner_agent/ out.
#
# Build from the repository root:
#   docker build -f deploy/docker/bot.Dockerfile -t tunebot-bot:0.1.0 .
# Run (settings come from the environment, see deploy/.env.example):
#   docker run --env-file deploy/.env -p 3000:3000 tunebot-bot:0.1.0

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the service needs; runner_agent/ stays out of this image on purpose.
COPY pyproject.toml README.md ./
COPY tunebot ./tunebot
COPY bot ./bot
COPY commands ./commands
COPY configs ./configs
# A non-editable install of the base dependencies only (no `[agent]`), into a venv that is copied whole.
RUN python -m venv /opt/tunebot \
 && /opt/tunebot/bin/pip install --no-cache-dir . \
 && /opt/tunebot/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('torch', 'swift', 'evalscope', 'transformers', 'runner_agent')))"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/tunebot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 tunebot \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tunebot
COPY --from=build /opt/tunebot /opt/tunebot
USER 10001:10001
WORKDIR /tmp
EXPOSE 3000
# python:*-slim has no curl; the standard library is enough for a liveness probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4).status == 200 else 1)"]
ENTRYPOINT ["tunebot"]
CMD ["serve"]
