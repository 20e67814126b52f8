"""Local artifacts: ``file://`` URIs, plain paths, and a local deployment's ``--artifactDir``.

A local deployment (``greengrass-cli deployment create --artifactDir``) keeps
artifacts as ``<artifactDir>/<name>/<version>/<file>``; a recipe's URI (even an
``s3://`` one) then names the file by its last segment, and nothing is fetched
from the network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._digest import Digest
from ._errors import ArtifactAccessDenied, ArtifactNotFound, ArtifactSpecError
from ._spec import ArtifactSpec


def local_source(spec: ArtifactSpec, component: str, version: str,
                 artifact_dir: Path | None) -> Path | None:
    """The local file for ``spec``, or None when it must come from S3."""
    parts = urlsplit(spec.uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ArtifactSpecError(f"artifact {spec.uri!r} of {component}: file:// URIs name "
                                    "local files only (file:///absolute/path)")
        return Path(unquote(parts.path))
    if artifact_dir is not None:
        candidate = artifact_dir / component / version / spec.filename
        if parts.scheme == "s3":
            return candidate if candidate.exists() else None
        if not parts.scheme:
            return Path(spec.uri) if Path(spec.uri).is_absolute() else \
                artifact_dir / component / version / spec.uri
    if parts.scheme == "s3":
        return None
    if not parts.scheme and Path(spec.uri).is_absolute():
        return Path(spec.uri)
    raise ArtifactSpecError(
        f"artifact {spec.uri!r} of {component}: expected s3://bucket/key, file:///path, an "
        "absolute path, or a relative path with an artifact directory (<dir>/<name>/<version>/)")


def copy_hashing(source: Path, target: Path, algorithm: str, uri: str) -> Digest:
    """Copy ``source`` to the new file ``target`` and hash it on the way (blocking)."""
    hasher = hashlib.new(algorithm)
    try:
        src = source.open("rb")
    except FileNotFoundError:
        raise ArtifactNotFound(f"artifact {uri}: no such file {source}; put it there or fix "
                               "the recipe's Uri") from None
    except PermissionError:
        raise ArtifactAccessDenied(f"artifact {uri}: cannot read {source} (permission denied); "
                                   "make it readable by the runtime's user") from None
    with src, target.open("xb") as dst:
        while block := src.read(1 << 20):
            hasher.update(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    return Digest(algorithm, hasher.digest())
