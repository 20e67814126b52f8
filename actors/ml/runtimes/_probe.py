"""Load an untrusted model once in a short-lived child process before the runtime does.

A model library with an undefined symbol ends the *process* in the dynamic loader
(``symbol lookup error``), and a broken kernel may crash it; neither is an exception
the runtime could catch. :func:`probe` loads the model in a child process (with
``LD_BIND_NOW=1``, so every symbol is resolved at load time), runs it once on zeros,
and turns what went wrong (the loader's message, the runtime's log line, the signal)
into a :class:`ModelLoadError` naming the file. Successful probes are remembered per
folder content for the life of the process.

``python -m actors.ml.runtimes._probe RUNTIME PATH`` is the child's side.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ._errors import ModelLoadError

TIMEOUT = 120.0
_ok: set[str] = set()
_lock = threading.Lock()
# libdlr logs its reason as "[hh:mm:ss] /path/src/file.cc:123: message" before failing.
_LOG_LINE = re.compile(r"^\[[\d:]+\] [^ ]+\.(?:cc|h|cpp):\d+: (?P<message>.+)$")


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256(str(path.resolve()).encode())
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _culprit(path: Path, text: str) -> str:
    """The file a message is about: one of the folder's files it names, else the folder."""
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.name in text:
                return str(f)
    return str(path)


_LOG_PREFIX = re.compile(r"\[[\d:]+\] [^ ]+\.(?:cc|h|cpp):\d+: ")


def _reason(stderr: str) -> str:
    return _LOG_PREFIX.sub("", _last_reason(stderr)).strip()


def _last_reason(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "symbol lookup error" in line or "undefined symbol" in line or "cannot open" in line:
            return line
    logged = [m.group("message") for m in map(_LOG_LINE.match, lines) if m]
    for line in reversed(lines):
        if line.startswith("edge-actors-probe: "):
            message = line.removeprefix("edge-actors-probe: ")
            # libdlr's exceptions often carry no text: its log line has the reason.
            if message.rstrip().endswith(":") and logged:
                return f"{message.rstrip()} {logged[-1]}"
            return message
    if logged:
        return logged[-1]
    return lines[-1] if lines else "no message"


def probe(path: str | Path, runtime: str = "dlr", *, timeout: float = TIMEOUT) -> None:
    """Load and run ``path`` once in a child process; raise ModelLoadError if that fails."""
    path = Path(path)
    key = f"{runtime}:{_fingerprint(path)}"
    with _lock:
        if key in _ok:
            return
    env = {**os.environ, "LD_BIND_NOW": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "actors.ml.runtimes._probe", runtime,
                               str(path)], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(f"{path}: loading and running the model once took more than "
                             f"{timeout:.0f} s in a test process; not loaded") from None
    if done.returncode == 0:
        with _lock:
            _ok.add(key)
        return
    reason = _reason(done.stderr)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ModelLoadError(f"{_culprit(path, reason)}: the model crashed a test process "
                             f"({name}) while loading or running once: {reason}")
    raise ModelLoadError(f"{_culprit(path, reason)}: {runtime} cannot load this model: {reason}")


def _child(runtime: str, path: str) -> int:
    import numpy as np

    from . import RunnerOptions, load_runner
    from ._variants import VariantRunner, is_variant_folder

    try:
        if is_variant_folder(path):  # a model compiled for several shapes: each of them
            folders = VariantRunner(path).variant_folders()
        else:
            folders = [Path(path)]
        for folder in folders:
            runner = load_runner(folder, runtime, RunnerOptions(threads=1), probe=False)
            feed = {i.name: np.zeros(tuple(d or 1 for d in i.shape), i.dtype)
                    for i in runner.inputs}
            runner.run_sync(feed)
            runner.close()
    except Exception as e:
        print(f"edge-actors-probe: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"folders": [str(f) for f in folders]}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
