"""The device's platform in Greengrass's words, and manifest platform matching."""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# uname -m -> (architecture, architecture.detail) as the Greengrass nucleus names them.
_ARCH = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "i686": ("x86", None),
    "i386": ("x86", None),
    "armv7l": ("arm", "arm71"),
    "armv6l": ("arm", "arm61"),
    "armv8l": ("arm", "arm71"),
    "aarch64": ("aarch64", None),
    "arm64": ("aarch64", None),
}


@dataclass(frozen=True)
class Platform:
    """What manifests are matched against: os, architecture, architecture.detail
    and any custom keys the nucleus configuration adds."""

    os: str
    architecture: str
    detail: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        lowered = key.lower()
        if lowered == "os":
            return self.os
        if lowered == "architecture":
            return self.architecture
        if lowered == "architecture.detail":
            return self.detail
        for k, v in self.extra.items():
            if k.lower() == lowered:
                return v
        return None

    @property
    def label(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.detail}" if self.detail else "")


def detect_platform(override: Mapping[str, str] | None = None, machine: str | None = None
                    ) -> Platform:
    """This device's platform; ``override`` (the nucleus configuration's
    ``platformOverride``) replaces or adds keys."""
    machine = (machine or _platform.machine()).lower()
    arch, detail = _ARCH.get(machine, (machine, None))
    system = _platform.system().lower()
    values: dict[str, Any] = {"os": "linux" if system == "linux" else system,
                              "architecture": arch, "architecture.detail": detail}
    extra: dict[str, str] = {}
    for key, value in (override or {}).items():
        if key.lower() in values:
            values[key.lower()] = str(value)
        else:
            extra[key] = str(value)
    return Platform(values["os"], values["architecture"], values["architecture.detail"], extra)


def _value_matches(wanted: str, actual: str | None) -> bool:
    if wanted in ("*", "all", "any"):
        return True
    if actual is None:
        return False
    if len(wanted) >= 2 and wanted.startswith("/") and wanted.endswith("/"):
        return re.fullmatch(wanted[1:-1], actual) is not None
    return wanted.lower() == actual.lower()


def platform_matches(wanted: Mapping[str, Any] | None, device: Platform) -> bool:
    """A manifest's Platform matches when every key it names matches the device."""
    if not wanted:
        return True
    return all(_value_matches(str(value), device.get(str(key))) for key, value in wanted.items())


def check_platform_value(value: str) -> str | None:
    """Why a Platform value is invalid (a bad /regex/), or None."""
    if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
        try:
            re.compile(value[1:-1])
        except re.error as exc:
            return f"{value!r} is not a valid regular expression: {exc}"
    return None


def other_platform(spec: str) -> Platform:
    """Another device's platform from ``KEY=VALUE,...`` (``os=linux,architecture=arm,
    architecture.detail=arm71``): keys not given are this machine's, except that a
    given architecture drops this machine's architecture.detail. ValueError on a
    malformed item."""
    override: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise ValueError(f"expected KEY=VALUE,..., got {item!r}")
        override[key.strip()] = value.strip()
    device = detect_platform(override)
    keys = {key.lower() for key in override}
    if "architecture" in keys and "architecture.detail" not in keys:
        device = replace(device, detail=None)
    return device
