"""Component artifacts: fetched from S3 or local files, checked, cached, unarchived, installed.

The deployment flow calls :meth:`ArtifactStore.fetch` for each component
before installing anything, and :meth:`ArtifactStore.gc` after a successful
deployment::

    async with ArtifactStore(root / "packages", S3Settings()) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0", [
            ArtifactSpec("s3://models/resnet.zip", digest="…", unarchive=Unarchive.ZIP)])
        fetched.path, fetched.decompressed_path   # {artifacts:path}, {artifacts:decompressedPath}

Greengrass's model-source rules are checked before any download: no SSE-C
objects, no bucket names with periods, read permission (s3:GetObject).
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._digest import Digest, hash_file, parse_digest
from ._errors import (
    ArtifactAccessDenied,
    ArtifactDiskFull,
    ArtifactError,
    ArtifactNotFound,
    ArtifactSpecError,
    BucketNameRefused,
    DigestMismatch,
    DownloadFailed,
    UnsafeArchive,
    UnsupportedEncryption,
)
from ._local import local_folder
from ._progress import Progress, ProgressCallback, progress_bar
from ._s3_rules import S3Settings
from ._spec import (
    Access,
    ArtifactSpec,
    FetchedArtifacts,
    FetchStatistics,
    Permission,
    Unarchive,
    artifacts_path,
    decompressed_path,
)

if TYPE_CHECKING:
    from ._store import ArtifactStore, GcReport
    from ._unzip import UnarchiveLimits

# The store (and its hashing, unzip and download machinery) loads on first use:
# a runtime that starts with its components already installed never needs it.
_LAZY = {"ArtifactStore": "._store", "GcReport": "._store", "UnarchiveLimits": "._unzip"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Access",
    "ArtifactAccessDenied",
    "ArtifactDiskFull",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactSpec",
    "ArtifactSpecError",
    "ArtifactStore",
    "BucketNameRefused",
    "Digest",
    "DigestMismatch",
    "DownloadFailed",
    "FetchStatistics",
    "FetchedArtifacts",
    "GcReport",
    "Permission",
    "Progress",
    "ProgressCallback",
    "S3Settings",
    "Unarchive",
    "UnarchiveLimits",
    "UnsafeArchive",
    "UnsupportedEncryption",
    "artifacts_path",
    "decompressed_path",
    "hash_file",
    "local_folder",
    "parse_digest",
    "progress_bar",
]
