# Toktoken container image. No Docker engine runs in this project's CI: the
# install and start steps below are replayed in a clean virtualenv by
# tests/test_deploy.py (RUN pip install ..., COPY, CMD, HEALTHCHECK), so a
# broken step is caught. Keep each step on one line so the replay can read it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --create-home --home-dir /app toktoken
WORKDIR /app

COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r requirements.txt

COPY toktoken /app/toktoken
COPY wsgi.py gunicorn.conf.py /app/

# Telemetry ledger (SQLite) when TELEMETRY_ENABLED=true.
RUN mkdir -p /data && chown toktoken /data
VOLUME /data

USER toktoken
ENV HOST=0.0.0.0 PORT=3456 TELEMETRY_DB=/data/usage.db
EXPOSE 3456

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '3456'), timeout=4)"

# Validates the configuration, then execs gunicorn (PID 1 handles SIGTERM gracefully).
CMD ["python", "-m", "toktoken", "serve"]
