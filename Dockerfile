# syntax=docker/dockerfile:1
# The gateway as a small image: the package is installed into a virtualenv in a build
# stage, and only that virtualenv is copied into a slim runtime that runs as an
# unprivileged user. The config is mounted at /etc/gateway/config.yaml, never baked in.
#
#   docker build -t llm-gateway .
#   docker run -p 8080:8080 -v $PWD/config.yaml:/etc/gateway/config.yaml:ro llm-gateway

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/gateway
WORKDIR /src
# Dependencies first, so that a change to the code does not download them again.
COPY pyproject.toml README.md ./
RUN /opt/gateway/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt && \
    /opt/gateway/bin/pip install -r requirements.txt
COPY gateway ./gateway
COPY providers ./providers
RUN /opt/gateway/bin/pip install --no-deps . && /opt/gateway/bin/pip uninstall -y pip setuptools

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
# Workers share their Prometheus values through files in PROMETHEUS_MULTIPROC_DIR,
# emptied at every start. GATEWAY_PORT is what the health check asks (and what
# deploy/config.yaml listens on).
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gateway-metrics \
    GATEWAY_PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["gateway"]
CMD ["serve", "--config", "/etc/gateway/config.yaml"]
