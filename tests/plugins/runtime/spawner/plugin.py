"""Fault-injection plugin for process trees: each tool leaves processes behind, or misbehaves
around limits, the way its name says. Helper pids are appended to args["pidfile"]."""

import os
import subprocess
import sys
import time

HELPER_ALLOC = (
    "import sys, time\n"
    "hoard = []\n"
    "while len(hoard) < int(sys.argv[1]):\n"
    "    hoard.append(bytearray(8 * 2**20))\n"
    "time.sleep(600)\n"
)


def _note(args, pid):
    with open(args["pidfile"], "a") as handle:
        handle.write(f"{pid}\n")


def _helper(args):
    proc = subprocess.Popen(["sleep", "600"])
    _note(args, proc.pid)
    return proc


class Plugin:
    def run(self, tool, args):
        return getattr(self, f"tool_{tool}")(args)

    def tool_ok(self, args):
        return {"ok": True, "pid": os.getpid()}

    def tool_helper_then_sleep(self, args):
        _helper(args)
        time.sleep(args.get("seconds", 60))
        return {"slept": True}

    def tool_helper_then_hang(self, args):
        _helper(args)
        while True:  # swallows every interruption: only the hard limit stops it
            try:
                time.sleep(0.05)
            except BaseException:
                pass

    def tool_helper_then_crash(self, args):
        _helper(args)
        os._exit(3)

    def tool_helper_then_alloc(self, args):
        _helper(args)
        hoard = []
        while True:
            hoard.append(b"x" * (8 * 2**20))

    def tool_helper_alloc(self, args):
        proc = subprocess.Popen([sys.executable, "-c", HELPER_ALLOC, str(args.get("chunks", 250))])
        _note(args, proc.pid)
        proc.wait()
        return {"helper_exit": proc.returncode}

    def tool_fork_and_return(self, args):
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        _note(args, pid)
        return {"forked": pid}

    def tool_daemon_and_return(self, args):
        read, write = os.pipe()
        first = os.fork()
        if first == 0:
            os.setsid()
            second = os.fork()
            if second == 0:
                os.close(read)
                os.write(write, str(os.getpid()).encode())
                os.close(write)
                time.sleep(600)
                os._exit(0)
            os._exit(0)
        os.close(write)
        os.waitpid(first, 0)
        daemon = int(os.read(read, 32))
        os.close(read)
        _note(args, daemon)
        return {"daemon": daemon}

    def tool_swallow_soft(self, args):
        try:
            time.sleep(args.get("seconds", 3))
        except Exception:  # the common `except Exception` that swallows SoftTimeLimitExceeded
            pass
        time.sleep(0.2)
        return {"late": True}

    def tool_big_result(self, args):
        return {"data": "x" * (args.get("mb", 100) * 2**20)}

    def tool_print_flood(self, args):
        line = "flood " * 20 + "\n"
        for _ in range(args.get("lines", 200_000)):
            sys.stdout.write(line)
        os.write(2, b"stderr from the plugin\n")
        subprocess.run(["sh", "-c", "echo helper-stdout; echo helper-stderr >&2"], check=True)
        print("the last line")
        return {"ok": True}

    def tool_fork_bomb(self, args):
        children = []
        try:
            for _ in range(args.get("n", 2000)):
                pid = os.fork()
                if pid == 0:
                    time.sleep(600)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            return {"forked": len(children), "error": type(exc).__name__}
        return {"forked": len(children), "error": None}
