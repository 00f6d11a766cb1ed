# The sla-monitor worker image (also runs `sla-monitor topics`). Built by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, so a code change does not reinstall them. rocksdict ships manylinux
# wheels, so no compiler is needed for the default RocksDB store.
COPY pyproject.toml README.md ./
COPY monitor/__init__.py monitor/__init__.py
RUN pip install '.[rocksdb]' && pip uninstall -y sla-monitor

# The source tree, installed in place: policies (deploy/policies) and JSON Schemas (schemas/)
# are read from it at run time.
COPY monitor monitor
COPY schemas schemas
COPY deploy deploy
RUN pip install --no-deps -e '.[rocksdb]' \
    && useradd --system --home-dir /var/lib/sla-monitor --create-home sla

USER sla
WORKDIR /var/lib/sla-monitor
ENV SLA_DATA_DIR=/var/lib/sla-monitor/data \
    SLA_POLICIES=/app/deploy/policies \
    SLA_METRICS_PORT=9108
VOLUME ["/var/lib/sla-monitor/data"]
EXPOSE 9108

ENTRYPOINT ["sla-monitor"]
CMD ["worker"]
