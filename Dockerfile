# syntax=docker/dockerfile:1
# The suite's one image: the four services, the API-key admin command and the
# Dask scheduler and workers, each chosen by the command (docker-compose.yml):
#
#   python -m services.storage | services.runner | services.notifier | gateway
#   python -m gateway.admin keys create --tenant T
#   dask scheduler | dask worker tcp://dask-scheduler:8786
#
# Build: docker build -t automl-suite .   (docker compose build does the same)

# Debian 12 explicitly: Microsoft's ODBC repository below is the one for Debian 12.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------- build
# The project from its own pyproject.toml, exact pins included, into a
# virtual environment that the final stage copies. Every dependency is a
# wheel (--only-binary): nothing compiles, here or anywhere.
FROM ${PYTHON_IMAGE} AS build
RUN python -m venv /opt/automl
WORKDIR /src
# The dependencies first, read from pyproject.toml: this layer stays cached
# while only the code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/automl/bin/pip install --no-cache-dir --only-binary=:all: -r /tmp/requirements.txt
# .dockerignore lets in only what the package is built from.
COPY . ./
RUN /opt/automl/bin/pip install --no-cache-dir --no-deps . \
    && /opt/automl/bin/python -m compileall -q /opt/automl/lib

# --------------------------------------------------------- ODBC repository
# Microsoft ODBC Driver 18 for SQL Server comes from Microsoft's Debian
# repository, the way Microsoft documents it: the packages-microsoft-prod
# package installs the repository's signing key and source list. Fetched in
# its own stage so that the final one needs neither curl nor gnupg.
FROM ${PYTHON_IMAGE} AS msodbc
ADD https://packages.microsoft.com/config/debian/12/packages-microsoft-prod.deb /packages-microsoft-prod.deb

# ----------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# Runtime libraries only, no compiler: libgomp1 (LightGBM's OpenMP), libodbc2
# (unixODBC, which pyodbc loads) and msodbcsql18 (the driver; ACCEPT_EULA
# accepts its licence). Unpinned Debian packages: the base image tag is what
# pins the distribution, and a rebuild picks up its security fixes.
# hadolint ignore=DL3008
RUN --mount=type=bind,from=msodbc,source=/packages-microsoft-prod.deb,target=/tmp/packages-microsoft-prod.deb \
    dpkg -i /tmp/packages-microsoft-prod.deb \
    && apt-get update \
    && ACCEPT_EULA=Y apt-get install -y --no-install-recommends libgomp1 libodbc2 msodbcsql18 \
    && rm -rf /var/lib/apt/lists/*
# A non-root user; /var/lib/automl is its data folder (the runner's volume
# mounts there and inherits the ownership).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/automl automl \
    && install -d -o automl -g automl /var/lib/automl
COPY --from=build /opt/automl /opt/automl
ENV PATH=/opt/automl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTOML_HOST=0.0.0.0 \
    AUTOML_DATA_DIR=/var/lib/automl \
    AUTOML_LOG_FORMAT=json
WORKDIR /home/automl
USER 10001:10001
# gateway gRPC and HTTP, storage, runner, notifier
EXPOSE 50051 8080 50052 50053 50054
# gRPC health (grpc.health.v1) of whichever suite service this container runs:
# the one whose port answers SERVING. docker-compose.yml sets a precise check
# per service; this one serves `docker run`.
HEALTHCHECK --interval=15s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys; from automl.common.health import check; from automl.common.settings import Settings; s = Settings.from_env(); ports = (s.gateway_port, s.storage_port, s.runner_port, s.notifier_port); sys.exit(0 if any(check(f'127.0.0.1:{p}', timeout=2) == 'SERVING' for p in ports) else 1)"]
CMD ["python", "-m", "gateway"]
