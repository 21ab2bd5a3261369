"""The tiny, dependency-free module Warden plugins may import."""

__all__ = ["InvalidInput"]


class InvalidInput(Exception):  # noqa: N818 - the public name fixed by the plugin contract
    """Raise from a plugin tool when the client's input is bad (a 400, not a plugin fault)."""
