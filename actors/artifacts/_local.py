"""Local artifacts: ``file://`` URIs, plain paths, and a local deployment's ``--artifactDir``.

A local deployment (``greengrass-cli deployment create --artifactDir``) keeps
artifacts as ``<artifactDir>/<name>/<version>/...``. As the Greengrass CLI does,
that whole folder becomes the component version's artifacts (a recipe need not
list them: the getting-started HelloWorld has no ``Artifacts``), copied again at
each local deployment that names it; a recipe's URI (``s3://`` or
``greengrass:``) then names its file there by the last segment, and nothing is
fetched from the network.
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
        if parts.scheme == "greengrass":
            return candidate
        if not parts.scheme:
            return Path(spec.uri) if Path(spec.uri).is_absolute() else \
                artifact_dir / component / version / spec.uri
    if parts.scheme == "s3":
        return None
    if parts.scheme == "greengrass":
        raise ArtifactSpecError(
            f"artifact {spec.uri!r} of {component}: greengrass: artifacts are uploaded with the "
            "component to the cloud; in a local deployment, give --artifactDir with the file at "
            f"<artifactDir>/{component}/{version}/{spec.filename}")
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


def local_folder(artifact_dir: Path | None, component: str, version: str) -> Path | None:
    """``<artifactDir>/<component>/<version>/`` when a local deployment brings it."""
    if artifact_dir is None:
        return None
    folder = artifact_dir / component / version
    return folder if folder.is_dir() else None


def folder_files(folder: Path) -> list[tuple[str, Path, int]]:
    """Every file under ``folder`` (following no symbolic link out of it): its path
    relative to the folder (with ``/``), its path, and its mode (blocking)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            raise ArtifactSpecError(f"{path}: a symbolic link out of the artifact folder "
                                    f"{folder}; copy the file in instead")
        if path.is_file():
            found.append((path.relative_to(folder).as_posix(), path, path.stat().st_mode))
    return found
