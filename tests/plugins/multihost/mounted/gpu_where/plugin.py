"""Multi-host test plugin: needs a GPU (the test-only WARDEN_FAKE_GPU stands in for one)."""

import os
import socket


class Plugin:
    def run(self, tool, args):
        if tool == "crash":
            os._exit(3)
        return {"host": socket.gethostname()}
