# syntax=docker/dockerfile:1
# Layotto for Python: the sidecar image. Dependencies are baked in at build time (every backend driver,
# .[all]); the container runs `layotto run` as an unprivileged user, and Docker probes /v1.0/healthz.
#   docker build -t layotto-python:dev .
#   docker run --rm -p 3500:3500 layotto-python:dev --app-id myapp --dapr-listen-addresses 0.0.0.0

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/layotto
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY app ./app
COPY building_blocks ./building_blocks
COPY component_specs ./component_specs
RUN /opt/layotto/bin/pip install ".[all]"

FROM python:3.11-slim
RUN groupadd --system --gid 10001 layotto \
    && useradd --system --uid 10001 --gid layotto --home-dir /home/layotto --create-home layotto \
    && mkdir -p /var/lib/layotto/secrets \
    && chown -R layotto:layotto /var/lib/layotto
COPY --from=build /opt/layotto /opt/layotto
ENV PATH=/opt/layotto/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/layotto
EXPOSE 3500 50001 50002 9090
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1.0/healthz' % os.environ.get('DAPR_HTTP_PORT', '3500'), timeout=2)"]
ENTRYPOINT ["layotto", "run"]
