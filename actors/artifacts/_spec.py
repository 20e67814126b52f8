"""What the deployment flow hands the artifact service, and what it gets back.

:class:`ArtifactSpec` mirrors one entry of a recipe's ``Artifacts`` list
(``Uri``, ``Digest``, ``Algorithm``, ``Unarchive``, ``Permission``) in
Greengrass's own words, so the recipe loader can build it field by field.
"""

from __future__ import annotations

import enum
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._errors import ArtifactSpecError


class Access(enum.Enum):
    """Who a ``Permission`` grants ``Read`` or ``Execute`` to, as recipes spell it."""

    NONE = "NONE"
    OWNER = "OWNER"
    ALL = "ALL"


class Unarchive(enum.Enum):
    """``Unarchive`` in a recipe: Greengrass knows ``ZIP`` and ``NONE``."""

    NONE = "NONE"
    ZIP = "ZIP"


@dataclass(frozen=True, slots=True)
class Permission:
    """``Permission: {Read, Execute}``; Greengrass's defaults are Read OWNER, Execute NONE."""

    read: Access = Access.OWNER
    execute: Access = Access.NONE

    @property
    def mode(self) -> int:
        """The file mode this permission gives an installed artifact (never writable)."""
        mode = {Access.NONE: 0, Access.OWNER: 0o400, Access.ALL: 0o444}[self.read]
        mode |= {Access.NONE: 0, Access.OWNER: 0o100, Access.ALL: 0o111}[self.execute]
        return mode


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    """One recipe artifact.

    ``uri`` is ``s3://bucket/key``, ``greengrass:<file>`` (a local deployment's
    ``--artifactDir`` holds it), ``file:///abs/path`` or a plain path;
    ``digest`` is the recipe's ``Digest``: the base64 of the raw hash, as
    Greengrass computes it (``None`` for local development artifacts: the
    content is then hashed but not checked, and never served from the cache
    without a request).
    """

    uri: str
    digest: str | None = None
    algorithm: str = "SHA-256"
    unarchive: Unarchive = Unarchive.NONE
    permission: Permission = field(default_factory=Permission)

    @property
    def filename(self) -> str:
        """The name the artifact gets under ``{artifacts:path}``: the URI's last segment."""
        parts = urlsplit(self.uri)
        # S3 keys are taken as written (Greengrass does not percent-decode them).
        path = {"s3": parts.path, "file": unquote(parts.path),
                "greengrass": parts.netloc + parts.path}.get(parts.scheme, self.uri)
        name = posixpath.basename(path.rstrip("/"))
        if not name or name in (".", ".."):
            raise ArtifactSpecError(f"artifact {self.uri!r}: the URI names no file")
        return name

    @property
    def archive_folder(self) -> str:
        """``<archive name without extension>``: where ``Unarchive: ZIP`` extracts to."""
        stem, _dot, _ext = self.filename.rpartition(".")
        return stem or self.filename


@dataclass(frozen=True, slots=True)
class FetchStatistics:
    """What fetching one component's artifacts cost: requests, bytes and resumed downloads."""

    requests: int = 0
    bytes_downloaded: int = 0
    resumed: int = 0
    retries: int = 0
    from_cache: int = 0


@dataclass(frozen=True, slots=True)
class FetchedArtifacts:
    """Where a component's artifacts are, for ``{artifacts:path}`` and
    ``{artifacts:decompressedPath}``; ``files`` maps each URI to its installed file."""

    component: str
    version: str
    path: Path
    decompressed_path: Path
    files: Mapping[str, Path]
    statistics: FetchStatistics = field(default_factory=FetchStatistics)


def artifacts_path(store: Path, component: str, version: str) -> Path:
    """``{artifacts:path}`` of a component version in the store rooted at ``store``."""
    return store / "artifacts" / component / version


def decompressed_path(store: Path, component: str, version: str) -> Path:
    """``{artifacts:decompressedPath}``: where its ZIP artifacts are unpacked."""
    return store / "artifacts-unarchived" / component / version
