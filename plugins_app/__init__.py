"""The plugin host: discovery, dependency checks, isolated probing, health."""
