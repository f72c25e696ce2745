# TiketQ Payments: gunicorn serving wsgi:app. Migrations run as a separate step
# (`flask --app wsgi db upgrade`), never inside the app.
#
# Two images from one base. `docker build .` gives the last stage, production: the service and
# no Midtrans simulator, whose control API must never be reachable where money is taken, so it
# needs MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY and refuses to start without them.
# `docker build --target dev .` adds the simulator, so that the local stack (docker-compose.yml)
# runs without keys.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
# gunicorn binds loopback by default; inside the container it must answer on every interface.
# Set both PORT and GUNICORN_BIND to move the port.
ENV GUNICORN_BIND=0.0.0.0:8000

WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY wsgi.py gunicorn.conf.py ./
COPY tiketq ./tiketq
COPY migrations ./migrations

RUN useradd --system --uid 10001 --home-dir /app tiketq \
    && mkdir -p /app/instance \
    && chown tiketq /app/instance
USER 10001

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['PORT'], timeout=2)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]

# Root-owned like the service's code: the simulator keeps its state in instance/, not here.
FROM base AS dev
COPY midtrans_simulator ./midtrans_simulator

# Last, so that a plain `docker build .` cannot ship the simulator; base already is the service.
FROM base AS production
