"""The class exists but has no run() method."""


class Plugin:
    """Cannot run anything."""
