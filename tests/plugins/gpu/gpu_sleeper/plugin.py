"""Routing and worker-loss test plugin: declares a GPU, runs anywhere."""

import os
import socket
import time


class Plugin:
    def run(self, tool, args):
        if tool == "sleep":
            time.sleep(args.get("seconds", 60))
            return {"slept": True}
        return {"pid": os.getpid(), "host": socket.gethostname()}
