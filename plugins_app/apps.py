"""App config of the plugin host."""

from django.apps import AppConfig


class PluginsAppConfig(AppConfig):
    name = "plugins_app"
    verbose_name = "Plugins"

    def ready(self) -> None:
        from project import deploy  # noqa: F401 - registers the secret-key system check
