"""Settings come only from the environment (and an optional `.env` beside manage.py)."""

import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("KVMWEB_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _secret_key() -> str:
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    if not DEBUG:
        raise environ.ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development only: a key generated once and kept, so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "kvmweb.audit",
    "kvmweb.operations",
    "hosts",
    "vms",
    "networks",
    "storage",
    "stats",
    "teams",
    "consoles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kvmweb.urls"
WSGI_APPLICATION = "kvmweb.wsgi.application"
ASGI_APPLICATION = "kvmweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "kvmweb.context_processors.shell",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'kvmweb.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write concurrently: wait for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
# Keep connections open between requests and tasks (checked before reuse): a fresh PostgreSQL
# session per operation cost a worker about a quarter of its CPU.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the small JS reads it to send X-CSRFToken on fetch POSTs
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "SAMEORIGIN"


def _redis_db(url: str, offset: int) -> str:
    """The same Redis server, `offset` database numbers above the one the URL names."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) + offset
    return urlunsplit(parts._replace(path=f"/{db}"))


REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Celery: the broker lives on REDIS_URL's database; operation state lives in the
# database, so no result backend is needed.
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Celery's Django fixup closes the database connection around every task unless told to reuse it.
CELERY_DB_REUSE_MAX = 1000
# Sampling has its own queue so a long operation never starves the graphs (and the reverse).
CELERY_TASK_ROUTES = {"stats.*": {"queue": "stats"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-stale-operations": {"task": "operations.reap", "schedule": 30.0},
    # Catches anything an event missed; events keep the inventory fresh in between.
    "reconcile-hosts": {"task": "hosts.reconcile_all", "schedule": env.float("KVMWEB_RECONCILE_EVERY", default=300.0)},
    # Live stats: one bulk read per connected host every 10 s; a round still queued when the next is
    # due is dropped. Then 10 s points roll up into 1 min and 10 min ones, and old points are pruned.
    "stats-sample": {"task": "stats.sample_all", "schedule": 10.0, "options": {"expires": 10}},
    "stats-rollup-1m": {"task": "stats.downsample", "schedule": 60.0, "args": (60,), "options": {"expires": 60}},
    "stats-rollup-10m": {"task": "stats.downsample", "schedule": 600.0, "args": (600,), "options": {"expires": 600}},
    "stats-prune": {"task": "stats.prune", "schedule": 60.0, "options": {"expires": 60}},
    # DHCP leases: libvirt has no lease event, so active networks' leases are read every 5 s and
    # pushed to pages (network.leases) only when they changed (networks/dhcp.py).
    "network-leases": {"task": "networks.refresh_leases_all", "schedule": 5.0, "options": {"expires": 5}},
}

# Channels: the pub/sub layer, one database above the broker. The default
# channels-redis layer silently drops a group message once 100 are queued for a
# process; losing a state change would leave a page wrong until reload. The
# pub/sub layer never drops and costs one PUBLISH per group send whatever the
# group's size; it has no backpressure, so publishers coalesce bursts
# (kvmweb.realtime.publish).
CHANNEL_REDIS_URL = env.str("CHANNEL_REDIS_URL", default=_redis_db(REDIS_URL, 1))
KVMWEB_CHANNEL_PREFIX = env.str("KVMWEB_CHANNEL_PREFIX", default=f"kvmweb{urlsplit(CHANNEL_REDIS_URL).path.strip('/')}")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Redis pub/sub ignores database numbers: the prefix keeps installs (and test runs)
        # that share one Redis server from hearing each other.
        "CONFIG": {
            "hosts": [CHANNEL_REDIS_URL],
            "prefix": KVMWEB_CHANNEL_PREFIX,
        },
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous API call gets 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "kvmweb.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "kvmweb API",
    "DESCRIPTION": "Manage KVM hosts and their virtual machines through libvirt.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed sidecar package: no CDN at runtime.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# How long a libvirt connection may take to open before the host counts as unreachable.
KVMWEB_LIBVIRT_OPEN_TIMEOUT = env.float("KVMWEB_LIBVIRT_OPEN_TIMEOUT", default=10.0)
# Default deadline for an operation; the reaper fails running operations past it.
KVMWEB_OPERATION_DEADLINE = env.int("KVMWEB_OPERATION_DEADLINE", default=900)
# How long a shutdown waits for the guest to power off before the operation fails (it never
# escalates to a forced power-off by itself). A request may ask for another value, up to 1800 s.
KVMWEB_SHUTDOWN_TIMEOUT = env.int("KVMWEB_SHUTDOWN_TIMEOUT", default=120)

# Where libvirt's QEMU driver writes <name>.log on hosts kvmweb shares a machine with (qemu:///system).
KVMWEB_QEMU_LOG_DIR = env.str("KVMWEB_QEMU_LOG_DIR", default="/var/log/libvirt/qemu")

# Peers whose X-Real-IP header names the client: kvmweb's own nginx. Unix-socket peers are always
# ours. (KVMWEB_TRUSTED_PROXIES is a different knob: the proxies nginx itself believes.)
KVMWEB_PROXY_PEERS = env.list("KVMWEB_PROXY_PEERS", default=["127.0.0.1/32", "::1/128"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Consoles: tokens last this long to connect (at most 60 s); the proxy listens at this path.
KVMWEB_CONSOLE_TOKEN_TTL = env.int("KVMWEB_CONSOLE_TOKEN_TTL", default=30)
KVMWEB_CONSOLE_PATH = "/console/websockify"
