"""ForgeSyte plugins: discovery and translation (parent side), the adapter (children only)."""
