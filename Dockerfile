# One image for the ingress and every worker (the command picks which).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY events events
COPY ingress ingress
COPY streams streams
COPY sinks sinks
COPY devstack devstack
COPY spakinect_pipeline spakinect_pipeline
COPY cli cli
COPY console console
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home /app pipeline \
    && mkdir -p /app/state && chown pipeline /app/state
USER pipeline
ENV STREAMS_STATE_DIR=/app/state LOG_FORMAT=json
ENTRYPOINT ["spakinect-pipeline"]
CMD ["ingress"]
