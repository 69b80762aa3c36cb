# freshtoken: one image for every role (api, worker, beat, migrate, mock-provider).
# The role is the CLI subcommand, e.g. `docker run IMAGE worker`; the default is the API.
#
# Build:  docker build -t freshtoken .
# Run:    docker compose up   (see docker-compose.yml)

# -- build stage: install the package (no dev/test extras) into a self-contained venv ----------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps .venv, tests, caches and .git out of this context.
COPY . .
RUN pip install .

# -- runtime stage: slim image, venv only, non-root ------------------------------------------
FROM python:3.11-slim

# No secrets here: hadolint's DL3064 only matches the "TOKEN" inside "FRESHTOKEN_".
# Defaults that make `docker run IMAGE api` reachable and logs machine-readable.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FRESHTOKEN_LOG_FORMAT=json \
    FRESHTOKEN_DATA_DIR=/var/lib/freshtoken \
    FRESHTOKEN_API_HOST=0.0.0.0 \
    FRESHTOKEN_API_PORT=3003

RUN groupadd --system --gid 10001 freshtoken \
    && useradd --system --uid 10001 --gid freshtoken --no-log-init \
        --home-dir /var/lib/freshtoken --create-home --shell /usr/sbin/nologin freshtoken

COPY --from=build /opt/venv /opt/venv

# The working directory is the data dir, writable by the service user (beat keeps its schedule
# file there). Numeric ids so that runtimes can verify the user is not root.
WORKDIR /var/lib/freshtoken
USER 10001:10001

EXPOSE 3003

# No HEALTHCHECK here on purpose: the same image runs the worker and beat, which serve no HTTP.
# The API's check lives in docker-compose.yml and needs only the Python already in the image
# (slim has no curl):
#   python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3003/health', timeout=4)"

ENTRYPOINT ["freshtoken"]
CMD ["api", "--host", "0.0.0.0", "--port", "3003"]
