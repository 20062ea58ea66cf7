# syntax=docker/dockerfile:1
# One image for every kvmweb process (web, ws, worker, beat, proxy): they differ only
# in the command they run (see docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- front-end assets: npm ci, then copy the files the pages load into static/vendor/
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/vendor_assets.sh scripts/
RUN bash scripts/vendor_assets.sh

# --- Python dependencies: libvirt-python builds from source against libvirt-dev
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config libvirt-dev \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

# --- the runtime image
FROM ${PYTHON_IMAGE}
# The app's uid: keys bind-mounted from the Docker host must be readable by it.
ARG KVMWEB_UID=1000
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=kvmweb.settings \
    KVMWEB_VAR_DIR=/app/var
# libvirt-clients brings libvirt0 (and virsh, for debugging); openssh-client is the
# transport of qemu+ssh:// hosts, which checks host keys against the mounted
# /etc/kvmweb/ssh/known_hosts; nginx is the proxy service; qemu-utils gives the worker
# qemu-img, which makes compressed volume copies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt-clients openssh-client nginx qemu-utils \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && useradd --uid "$KVMWEB_UID" --create-home --home-dir /home/kvmweb --shell /usr/sbin/nologin kvmweb \
    && printf 'Host *\n    UserKnownHostsFile /etc/kvmweb/ssh/known_hosts ~/.ssh/known_hosts\n' \
        > /etc/ssh/ssh_config.d/kvmweb.conf
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
COPY --from=assets /src/static/vendor /app/static/vendor
# The code stays root's; only var/ (static files, sockets, logs, beat schedule) is the app's.
RUN mkdir -p /app/var/static /app/var/run /app/var/log /app/var/nginx /app/var/uploads \
    && SECRET_KEY=collectstatic-at-build-time python manage.py collectstatic --noinput -v 0 \
    && chown -R kvmweb:kvmweb /app/var
USER kvmweb
EXPOSE 8000 8001 8080
CMD ["gunicorn", "kvmweb.wsgi:application", "--workers", "2", "--timeout", "3600", "--bind", "0.0.0.0:8000"]
