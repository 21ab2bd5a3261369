"""Settings, read from the environment in this one place; defaults suit a laptop."""

import os
from pathlib import Path

import dj_database_url

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


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "warden-insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver"
).split(",")

INSTALLED_APPS = [
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
    "plugins_app",
    "execution_app",
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WARDEN_LOG_LEVEL", "INFO")},
}

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
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
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
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
WARDEN_QUARANTINE_AFTER = env_int("WARDEN_QUARANTINE_AFTER", 3)
WARDEN_DEFAULT_TIMEOUT_S = env_int("WARDEN_DEFAULT_TIMEOUT_S", 60)
WARDEN_DEFAULT_MEMORY_MB = env_int("WARDEN_DEFAULT_MEMORY_MB", 1024)
WARDEN_HARD_GRACE_S = env_int("WARDEN_HARD_GRACE_S", 5)
WARDEN_PENDING_TTL_S = env_int("WARDEN_PENDING_TTL_S", 600)
# How long past its hard deadline a RUNNING job may stay before the reaper fails it.
WARDEN_REAPER_GRACE_S = env_int("WARDEN_REAPER_GRACE_S", 30)
WARDEN_JOB_RETENTION_DAYS = env_int("WARDEN_JOB_RETENTION_DAYS", 30)
WARDEN_MAX_UPLOAD_MB = env_int("WARDEN_MAX_UPLOAD_MB", 20)
WARDEN_SYNC_WAIT_MARGIN_S = env_int("WARDEN_SYNC_WAIT_MARGIN_S", 10)
WARDEN_SYNC_ON_WORKER_START = env_bool("WARDEN_SYNC_ON_WORKER_START", True)
WARDEN_MEMORY_POLL_S = float(os.environ.get("WARDEN_MEMORY_POLL_S", "0.002"))
WARDEN_RUN_DIR = Path(os.environ.get("WARDEN_RUN_DIR", VAR_DIR / "run"))
# How a job's process tree is contained: auto (cgroups when writable, else tree), cgroup, tree.
WARDEN_CONTAINMENT = os.environ.get("WARDEN_CONTAINMENT", "auto")
# Processes one job may have at once (cgroup mode; 0 = no limit): a fork bomb stops there.
WARDEN_JOB_MAX_PIDS = env_int("WARDEN_JOB_MAX_PIDS", 256)
# The last this many KB of a job's stdout/stderr are kept on the Job (admin only).
WARDEN_JOB_OUTPUT_KB = env_int("WARDEN_JOB_OUTPUT_KB", 64)
# A result whose JSON is larger fails with OutputValidationError before it is stored.
WARDEN_MAX_RESULT_MB = float(os.environ.get("WARDEN_MAX_RESULT_MB", "16"))
# Time a worker child may spend loading a plugin on first use; not counted against job limits.
WARDEN_LOAD_TIMEOUT_S = float(os.environ.get("WARDEN_LOAD_TIMEOUT_S", str(WARDEN_PROBE_TIMEOUT_S)))

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
    "reap-stale-jobs": {"task": "execution_app.tasks.reap_jobs", "schedule": 15.0},
    "purge-old-jobs": {"task": "execution_app.tasks.purge_jobs", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
