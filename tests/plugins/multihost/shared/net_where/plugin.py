"""Multi-host test plugin found at the same path on every host: where a job runs, and whether an
uploaded file reached it."""

import socket
import time


class Plugin:
    def run(self, tool, args):
        time.sleep(float(args.get("seconds", 0)))
        if tool == "size":
            return {"host": socket.gethostname(), "size": len(args["image_bytes"])}
        return {"host": socket.gethostname()}
