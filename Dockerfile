# One image for every roadstream service; compose.yaml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY perception ./perception
COPY planning ./planning
COPY simulators ./simulators
RUN pip install .
RUN useradd --create-home --uid 10001 roadstream
USER roadstream
ENTRYPOINT []
CMD ["roadstream", "--help"]
