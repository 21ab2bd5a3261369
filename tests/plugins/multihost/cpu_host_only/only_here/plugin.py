"""Reports the host it runs on."""

import socket


class Plugin:
    def run(self, tool, args):
        return {"host": socket.gethostname()}
