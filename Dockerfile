# Minimal image of the suite: one image, one command per service.
# The production image (multi-stage, ODBC Driver 18 for SQL Server) comes with
# the deployment issue.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY automl ./automl
COPY services ./services
COPY gateway ./gateway
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 automl
USER automl
ENV AUTOML_HOST=0.0.0.0 AUTOML_LOG_FORMAT=json
# Health checks are per service in docker-compose.yml:
#   python -m automl.common.health 127.0.0.1:<port>
CMD ["python", "-m", "gateway"]
