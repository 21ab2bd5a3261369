"""Fault-injection plugin: each tool fails the way its name says."""

import ctypes
import hashlib
import os
import time

import warden


class Plugin:
    def run(self, tool, args):
        return getattr(self, f"tool_{tool}")(args)

    def tool_ok(self, args):
        return {"ok": True, "n": args.get("n")}

    def tool_image(self, args):
        return {"size": len(args["image_bytes"]), "mime_type": args["mime_type"]}

    def tool_raise(self, args):
        raise ValueError("boom")

    def tool_raise_nul(self, args):
        raise ValueError("bad\x00byte \ud800")

    def tool_invalid_input(self, args):
        raise warden.InvalidInput("argument 'n' must be even")

    def tool_return_none(self, args):
        return None

    def tool_return_list(self, args):
        return [1, 2]

    def tool_return_nonjson(self, args):
        return {"when": object()}

    def tool_return_nul(self, args):
        return {"text": "a\x00b"}

    def tool_bad_output(self, args):
        return {"value": "not an integer"}

    def tool_sleep(self, args):
        time.sleep(args.get("seconds", 60))
        return {"slept": True}

    def tool_ignore_soft(self, args):
        deadline = time.monotonic() + args.get("seconds", 60)
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except BaseException:  # swallows SoftTimeLimitExceeded: only the hard limit stops it
                pass
        return {"slept": True}

    def tool_spin_native(self, args):
        # One long C call: no Python signal handler runs until it returns.
        hashlib.pbkdf2_hmac("sha256", b"warden", b"salt", 2**31 - 1)
        return {"done": True}

    def tool_alloc(self, args):
        hoard = []
        while True:
            hoard.append(b"x" * (8 * 2**20))

    def tool_alloc_slowly(self, args):
        # 4 MB every 10 ms: slow enough that the watchdog, not a backstop, stops it.
        hoard = []
        while True:
            hoard.append(b"x" * (4 * 2**20))
            time.sleep(0.01)

    def tool_alloc_at_once(self, args):
        # One allocation far past the limit, in C with the GIL held: only a backstop can stop it.
        return {"size": len(bytearray(args.get("mb", 600) * 2**20))}

    def tool_segfault(self, args):
        ctypes.string_at(0)

    def tool_exit(self, args):
        os._exit(3)

    def tool_system_exit(self, args):
        raise SystemExit(4)

    def tool_keyboard_interrupt(self, args):
        raise KeyboardInterrupt

    def tool_pid(self, args):
        return {"pid": os.getpid()}
