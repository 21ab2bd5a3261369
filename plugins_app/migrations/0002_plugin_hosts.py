"""Plugins are identified by name; what each host found out about a plugin moves to PluginHost."""

import socket

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def to_hosts(apps, schema_editor):
    """Keep what the last sync found as this machine's host entry; a record's state becomes its
    runtime state (load-time failures are per host now)."""
    record_model = apps.get_model("plugins_app", "PluginRecord")
    host_model = apps.get_model("plugins_app", "PluginHost")
    host = getattr(settings, "WARDEN_HOST_NAME", None) or socket.gethostname()
    record_model.objects.filter(shadowed=True).delete()
    for record in record_model.objects.all():
        host_model.objects.create(
            plugin=record,
            host=host,
            location=record.location,
            source=record.source,
            version=record.version,
            state=record.state,
            reason=record.reason if record.fault_origin != "runtime" else None,
            hint=record.hint if record.fault_origin != "runtime" else None,
            probed_at=record.probed_at,
            probe_duration_ms=record.probe_duration_ms,
            probe_traceback=record.probe_traceback,
        )
        if record.fault_origin != "runtime":
            record.state = "INITIALIZED" if record.state == "INITIALIZED" else "LOADED"
            record.reason = record.hint = None
            record.fault_origin = ""
            record.save(update_fields=["state", "reason", "hint", "fault_origin"])


class Migration(migrations.Migration):
    dependencies = [("plugins_app", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="PluginHost",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("host", models.CharField(db_index=True, max_length=255)),
                ("location", models.CharField(max_length=1024)),
                ("source", models.CharField(default="directory", max_length=16)),
                ("shadowed", models.BooleanField(default=False)),
                ("version", models.CharField(blank=True, default="", max_length=64)),
                ("queues", models.JSONField(blank=True, default=list)),
                (
                    "state",
                    models.CharField(
                        choices=[("LOADED", "Loaded"), ("INITIALIZED", "Initialized"), ("FAILED", "Failed"), ("UNAVAILABLE", "Unavailable")],
                        default="LOADED",
                        max_length=16,
                    ),
                ),
                ("reason", models.TextField(blank=True, null=True)),
                ("hint", models.TextField(blank=True, null=True)),
                ("probed_at", models.DateTimeField(blank=True, null=True)),
                ("probe_duration_ms", models.FloatField(blank=True, null=True)),
                ("probe_traceback", models.TextField(blank=True, default="")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "plugin",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="hosts", to="plugins_app.pluginrecord"),
                ),
            ],
            options={"ordering": ["plugin", "host", "shadowed", "location"]},
        ),
        migrations.AddConstraint(
            model_name="pluginhost",
            constraint=models.UniqueConstraint(fields=("plugin", "host", "location"), name="unique_plugin_host_location"),
        ),
        migrations.RunPython(to_hosts, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="pluginrecord", name="unique_active_plugin_name"),
        migrations.RemoveField(model_name="pluginrecord", name="location"),
        migrations.RemoveField(model_name="pluginrecord", name="shadowed"),
        migrations.RemoveField(model_name="pluginrecord", name="missing"),
        migrations.RemoveField(model_name="pluginrecord", name="probe_traceback"),
        migrations.RemoveField(model_name="pluginrecord", name="probe_duration_ms"),
        migrations.AlterField(model_name="pluginrecord", name="name", field=models.CharField(max_length=64, unique=True)),
        migrations.AlterModelOptions(name="pluginrecord", options={"ordering": ["name"]}),
    ]
