"""A real mosquitto broker for the tests and the benchmark: started on 127.0.0.1 on a free
port with a private config and persistence folder, stopped (or killed) on demand."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INSTALL_HINT = "mosquitto is not installed (apt-get install -y mosquitto)"


def available() -> bool:
    return os.access(MOSQUITTO, os.X_OK)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One broker process; ``restart()`` keeps the port and the persistence folder."""

    def __init__(self, directory: Path, *, tls: dict[str, Path] | None = None,
                 persistence: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.tls = tls
        self.persistence = persistence
        self.process: subprocess.Popen[bytes] | None = None
        self.config = directory / "mosquitto.conf"
        lines = [
            "per_listener_settings false",
            "allow_anonymous true",
            f"listener {self.port} 127.0.0.1",
            "log_dest stderr",
            "log_type error",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", who cannot read a private temp folder.
            import pwd
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        if persistence:
            lines += ["persistence true", f"persistence_location {directory}/",
                      "autosave_interval 1", "autosave_on_changes true"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}",
                      f"keyfile {tls['key']}", "require_certificate true",
                      "use_identity_as_username true"]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        with open(self.directory / "mosquitto.log", "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mosquitto exited: "
                                   + (self.directory / "mosquitto.log").read_text())
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.005)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within 10 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()
