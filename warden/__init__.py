"""The tiny, dependency-free module Warden plugins may import."""

__all__ = ["InvalidInput"]


class InvalidInput(Exception):
    """Raise from a plugin tool when the client's input is bad (a 400, not a plugin fault)."""
