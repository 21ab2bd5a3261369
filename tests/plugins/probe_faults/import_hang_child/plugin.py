"""Starts a long-lived child process at import, records its pid, then hangs.

The probe timeout must kill the child too (the whole process group), not only the probe process.
"""

import subprocess
import sys
import time
from pathlib import Path

_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
(Path(__file__).parent / "child.pid").write_text(str(_child.pid))
while True:
    time.sleep(0.05)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
