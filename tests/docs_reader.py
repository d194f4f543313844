"""Runs one page's examples in order in the current folder, as a reader would: shell blocks with
bash (stopping at the first failing command), Python blocks in one namespace. Reads the examples as
JSON on stdin ([{"where", "language", "code"}]); on the first failure prints where it was and why
and exits 1. Used by test_docs.py, in a process whose environment is the reader's."""
import json
import subprocess
import sys
import traceback

namespace = {"__name__": "__main__"}
for example in json.load(sys.stdin):
    if example["language"] == "bash":
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", example["code"]], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{example['where']} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        continue
    try:
        exec(compile(example["code"], example["where"], "exec"), namespace)
    except Exception:  # noqa: BLE001 - reported with the page and line it came from
        sys.exit(f"{example['where']} failed:\n{traceback.format_exc(limit=-4)}")
