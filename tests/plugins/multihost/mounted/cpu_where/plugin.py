"""Multi-host test plugin: where a CPU job runs, and whether an uploaded file reached it."""

import socket
import time


class Plugin:
    def run(self, tool, args):
        if tool == "sleep":
            time.sleep(float(args.get("seconds", 1)))
        if tool == "size":
            return {"host": socket.gethostname(), "size": len(args["image_bytes"])}
        return {"host": socket.gethostname()}
