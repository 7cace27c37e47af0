# One image for every process of the stack: the API, the Celery workers, beat and Flower
# (docker-compose.yml picks the command). Build: docker build -t marketmon .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, installed in place so `marketmon` and alembic find alembic.ini beside it.
COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY app ./app
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 --user-group marketmon \
    && mkdir -p /app/data /var/lib/marketmon/metrics \
    && chown -R marketmon:marketmon /app/data /var/lib/marketmon

USER marketmon

EXPOSE 8000

# Liveness of the API (the compose file sets its own check, or none, for the other processes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# uvicorn drains requests in flight on SIGTERM (up to 30 s), then the app stops its loops.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--timeout-graceful-shutdown", "30"]
