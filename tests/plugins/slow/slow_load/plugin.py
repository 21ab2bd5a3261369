"""A plugin whose __init__ takes 1.5 s, like one loading a model on first use."""

import time


class Plugin:
    def __init__(self):
        time.sleep(1.5)

    def run(self, tool, args):
        return {"ok": True}
