import os
from pathlib import Path

if os.environ.get("FSFIX_MARKER_DIR"):
    Path(os.environ["FSFIX_MARKER_DIR"], "missing-imported").write_text(str(os.getpid()))
