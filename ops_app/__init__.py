"""Operator experience: Prometheus metrics, liveness and readiness, the admin dashboard, logs."""
