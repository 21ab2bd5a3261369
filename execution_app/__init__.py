"""Crash-proof execution of plugin tools: jobs, ToolRunner, Celery tasks, analyze API."""
