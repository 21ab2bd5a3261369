"""Settings, read from the environment in this one place; defaults suit a laptop."""

import os
import socket
from pathlib import Path

import dj_database_url

from project.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("WARDEN_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    """Return the boolean value of environment variable `name` (1/true/yes/on)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """Return the integer value of environment variable `name`."""
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, else the file DJANGO_SECRET_KEY_FILE ($WARDEN_VAR_DIR/secret-key, which
    `make run` creates), else a public key when DEBUG is on. With DEBUG off and no key, the empty
    key makes every Warden process refuse to start (project/deploy.py)."""
    key = os.environ.get("DJANGO_SECRET_KEY", "").strip()
    if key:
        return key
    path = Path(os.environ.get("DJANGO_SECRET_KEY_FILE", VAR_DIR / "secret-key"))
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        key = ""
    return key or ("warden-insecure-debug-only-key" if DEBUG else "")


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver"
).split(",")
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

# HTTPS: on when Warden is served over TLS (directly or by a proxy in front); then
# `manage.py check --deploy` passes. Off by default: `make run` serves plain HTTP on localhost.
WARDEN_HTTPS = env_bool("WARDEN_HTTPS", False)
SECURE_SSL_REDIRECT = WARDEN_HTTPS
SESSION_COOKIE_SECURE = WARDEN_HTTPS
CSRF_COOKIE_SECURE = WARDEN_HTTPS
SECURE_HSTS_SECONDS = env_int("WARDEN_HSTS_SECONDS", 31536000) if WARDEN_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("WARDEN_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("WARDEN_HSTS_PRELOAD", True)
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (only then: a client could
# otherwise claim HTTPS itself).
if env_bool("WARDEN_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers probe these over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]

INSTALLED_APPS = [
    "ops_app",  # first: its admin templates (dashboard, branding) override the stock ones
    "ops_app.apps.WardenAdminConfig",  # django.contrib.admin with Warden's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "plugins_app",
    "execution_app",
]

MIDDLEWARE = [
    "ops_app.middleware.RequestMetricsMiddleware",  # first: times and logs the whole request
    "project.middleware.refuse_unstorable_request",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; several processes (web, worker children, beat) write to it, so it runs in
# WAL mode with IMMEDIATE transactions and a busy timeout. DATABASE_URL switches to PostgreSQL.
SQLITE_PATH = Path(os.environ.get("WARDEN_SQLITE_PATH", VAR_DIR / "warden.sqlite3"))
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"),
        conn_max_age=env_int("WARDEN_DB_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that the worker processes the tests start share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-warden.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(os.environ.get("WARDEN_MEDIA_ROOT", VAR_DIR / "media"))

# text: readable lines with [request_id=… job_id=…]; json: one JSON object per line.
WARDEN_LOG_FORMAT = os.environ.get("WARDEN_LOG_FORMAT", "text").strip().lower()
LOGGING = logging_config(fmt=WARDEN_LOG_FORMAT, level=os.environ.get("WARDEN_LOG_LEVEL", "INFO"))

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "project.auth.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "project.parsers.SafeJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "project.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "project.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Warden API",
    "DESCRIPTION": "Plugin health and crash-proof execution of plugin tools.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "project.openapi.add_links_and_public_health",
    ],
}

# --- Warden ---------------------------------------------------------------------------------------
WARDEN_PLUGIN_DIRS = [
    Path(p) if Path(p).is_absolute() else BASE_DIR / p
    for p in os.environ.get("WARDEN_PLUGIN_DIRS", "plugin_packages").split(os.pathsep)
    if p
]
WARDEN_PROBE_TIMEOUT_S = float(os.environ.get("WARDEN_PROBE_TIMEOUT_S", "30"))
WARDEN_PROBE_CONCURRENCY = env_int("WARDEN_PROBE_CONCURRENCY", max(4, 2 * (os.cpu_count() or 1)))
WARDEN_PROBE_MEMORY_MB = env_int("WARDEN_PROBE_MEMORY_MB", 2048)
WARDEN_PUBLIC_HEALTH = env_bool("WARDEN_PUBLIC_HEALTH", True)
# Seconds a web process remembers a valid API token (a deleted token works that much longer).
WARDEN_TOKEN_CACHE_S = float(os.environ.get("WARDEN_TOKEN_CACHE_S", "5"))
# Niceness of worker children (plugin code): on a host that also serves the web, requests win
# the CPU from CPU-bound jobs. 0 leaves them at the worker's priority.
WARDEN_WORKER_NICE = env_int("WARDEN_WORKER_NICE", 10)
WARDEN_QUARANTINE_AFTER = env_int("WARDEN_QUARANTINE_AFTER", 3)
WARDEN_DEFAULT_TIMEOUT_S = env_int("WARDEN_DEFAULT_TIMEOUT_S", 60)
WARDEN_DEFAULT_MEMORY_MB = env_int("WARDEN_DEFAULT_MEMORY_MB", 1024)
WARDEN_HARD_GRACE_S = env_int("WARDEN_HARD_GRACE_S", 5)
WARDEN_PENDING_TTL_S = env_int("WARDEN_PENDING_TTL_S", 600)
# How long past its hard deadline a RUNNING job may stay before the reaper fails it.
WARDEN_REAPER_GRACE_S = env_int("WARDEN_REAPER_GRACE_S", 30)
# How often beat runs the reaper; a PENDING job whose broker message was lost (Redis restarted
# without its data) is queued again by it once older than WARDEN_REQUEUE_AFTER_S.
WARDEN_REAPER_INTERVAL_S = float(os.environ.get("WARDEN_REAPER_INTERVAL_S", "15"))
WARDEN_REQUEUE_AFTER_S = env_int("WARDEN_REQUEUE_AFTER_S", 10)
WARDEN_JOB_RETENTION_DAYS = env_int("WARDEN_JOB_RETENTION_DAYS", 30)
# State-history rows kept per plugin (the newest); older ones are deleted as new ones come.
WARDEN_STATE_HISTORY_KEEP = env_int("WARDEN_STATE_HISTORY_KEEP", 200)
WARDEN_MAX_UPLOAD_MB = env_int("WARDEN_MAX_UPLOAD_MB", 20)
# Where job inputs are kept: "database" (a table of their own: every worker host can read them)
# or "storage" (Django's default STORAGES backend, e.g. S3 through django-storages).
WARDEN_INPUT_STORAGE = os.environ.get("WARDEN_INPUT_STORAGE", "database")
WARDEN_SYNC_WAIT_MARGIN_S = env_int("WARDEN_SYNC_WAIT_MARGIN_S", 10)
WARDEN_SYNC_ON_WORKER_START = env_bool("WARDEN_SYNC_ON_WORKER_START", True)
WARDEN_MEMORY_POLL_S = float(os.environ.get("WARDEN_MEMORY_POLL_S", "0.002"))
WARDEN_RUN_DIR = Path(os.environ.get("WARDEN_RUN_DIR", VAR_DIR / "run"))
# This machine's name in per-host plugin availability (PluginHost.host) for `manage.py plugins
# sync`; a worker uses the host part of its node name (`-n name@host`, default %h = hostname).
WARDEN_HOST_NAME = os.environ.get("WARDEN_HOST_NAME") or socket.gethostname()
# How a job's process tree is contained: auto (cgroups when writable, else tree), cgroup, tree.
WARDEN_CONTAINMENT = os.environ.get("WARDEN_CONTAINMENT", "auto")
# Tasks (processes and their threads, the worker child's own included) one worker child's jobs
# may have at once (cgroup mode; 0 = no limit): a fork bomb stops there.
WARDEN_JOB_MAX_PIDS = env_int("WARDEN_JOB_MAX_PIDS", 1024)
# The last this many KB of a job's stdout/stderr are kept on the Job (admin only).
WARDEN_JOB_OUTPUT_KB = env_int("WARDEN_JOB_OUTPUT_KB", 64)
# A result whose JSON is larger fails with OutputValidationError before it is stored.
WARDEN_MAX_RESULT_MB = float(os.environ.get("WARDEN_MAX_RESULT_MB", "16"))
# A synchronous analyze gets a result of at most this much JSON straight from the task's result
# (Redis) instead of reading it back from the job row, which holds it in any case.
WARDEN_INLINE_RESULT_KB = env_int("WARDEN_INLINE_RESULT_KB", 256)
# Time a worker child may spend loading a plugin on first use; not counted against job limits.
WARDEN_LOAD_TIMEOUT_S = float(os.environ.get("WARDEN_LOAD_TIMEOUT_S", str(WARDEN_PROBE_TIMEOUT_S)))
# TEST-ONLY: this host claims a CUDA GPU without torch or nvidia-smi being asked (the multi-host
# test's stand-in for a GPU box). Never set it in a deployment: GPU jobs would run on a CPU.
WARDEN_FAKE_GPU = env_bool("WARDEN_FAKE_GPU", False)

# BENCHMARK ONLY: mount the trivial baseline views of project/bench_views.py under /bench/
# (`make bench` sets it for its own gunicorn; never set it in a deployment).
WARDEN_BENCH_VIEWS = env_bool("WARDEN_BENCH_VIEWS", False)

# Request bodies: a base64 image is a third larger than the file it carries.
DATA_UPLOAD_MAX_MEMORY_SIZE = WARDEN_MAX_UPLOAD_MB * 1024 * 1024 * 4 // 3 + 64 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = WARDEN_MAX_UPLOAD_MB * 1024 * 1024

# --- Celery ---------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("WARDEN_REDIS_URL", "redis://127.0.0.1:6391/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
# A crashing task must not be redelivered forever; the job row records the crash instead.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A child that ends a job above this RSS (a plugin leaked, or survived a MemoryError) is replaced.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WARDEN_WORKER_MAX_MEMORY_MB", 3072) * 1024  # KiB
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Fail fast when Redis is down so the API can answer 503 within a few seconds.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.5,
}
# Longest possible hard limit is bounded by WARDEN_MAX_TIMEOUT_S + grace; the visibility timeout
# must exceed it or Redis hands a running job to a second worker.
WARDEN_MAX_TIMEOUT_S = env_int("WARDEN_MAX_TIMEOUT_S", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": WARDEN_MAX_TIMEOUT_S + WARDEN_HARD_GRACE_S + 600,
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "max_retries": 1,
}
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_REDIS_SOCKET_TIMEOUT = 10
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 30
CELERY_BEAT_SCHEDULE = {
    "reap-stale-jobs": {
        "task": "execution_app.tasks.reap_jobs",
        "schedule": WARDEN_REAPER_INTERVAL_S,
    },
    "purge-old-jobs": {"task": "execution_app.tasks.purge_jobs", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Operations: metrics, liveness/readiness, access logs ---------------------------------------
# /metrics is public unless false; then it needs an API token or a staff session.
WARDEN_PUBLIC_METRICS = env_bool("WARDEN_PUBLIC_METRICS", True)
# Plugins that must accept jobs for /health/ready to answer 200 (comma-separated names).
WARDEN_REQUIRED_PLUGINS = [
    n.strip() for n in os.environ.get("WARDEN_REQUIRED_PLUGINS", "").split(",") if n.strip()
]
# Each readiness check (database, Redis) gives up after this many seconds.
WARDEN_HEALTH_TIMEOUT_S = float(os.environ.get("WARDEN_HEALTH_TIMEOUT_S", "1"))
# One line per HTTP request on the `warden.access` logger (health probes and scrapes at DEBUG).
WARDEN_ACCESS_LOG = env_bool("WARDEN_ACCESS_LOG", True)
# HTTP request metrics of every gunicorn process of this host are summed from the files each
# process keeps here (prometheus_client multiprocess mode); must be set before prometheus_client
# is imported, hence here. Host-local; gunicorn.conf.py empties it when gunicorn starts.
PROMETHEUS_MULTIPROC_DIR = Path(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR") or VAR_DIR / "prometheus"
).resolve()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
