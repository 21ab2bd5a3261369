"""App config of the execution side."""

from django.apps import AppConfig


class ExecutionAppConfig(AppConfig):
    name = "execution_app"
    verbose_name = "Execution"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the worker signal handlers
