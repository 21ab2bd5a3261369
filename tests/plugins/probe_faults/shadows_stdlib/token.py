"""Not the standard library's `token`: importing it (e.g. through `traceback` -> `tokenize`)
fails."""

raise ImportError("the plugin's own token.py was imported")
