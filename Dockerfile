# syntax=docker/dockerfile:1
# The exporter's image. One stage builds wheels (the project's and its dependencies'), the
# final stage installs them from a read-only mount, so it keeps no source tree, no wheel files
# and no pip cache. Config: mount a file and point OLLAMA_PROBE_EXPORTER_CONFIG (or
# --config.file) at it, or set OLLAMA_URL for the zero-config default target.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ ./exporter/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# One malloc arena and no per-thread caches of freed chunks keep the resident size flat under
# many probe threads (benches/findings.md, "Allocator settings"); remove them to get glibc's defaults.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MALLOC_ARENA_MAX=1 \
    GLIBC_TUNABLES=glibc.malloc.tcache_count=0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels ollama-probe-exporter \
    && groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin exporter
# Numeric, so that runtimes checking "non-root" without /etc/passwd can tell.
USER 10001:10001
EXPOSE 10434
# The slim image has no curl; urlopen raises (exit 1) on any status other than 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:10434/-/healthy', timeout=4)"]
ENTRYPOINT ["ollama-probe-exporter"]
