"""Multi-host test plugin found at the same path on every host: where a job runs."""

import socket
import time


class Plugin:
    def run(self, tool, args):
        if tool == "sleep":
            time.sleep(float(args.get("seconds", 1)))
        return {"host": socket.gethostname()}
