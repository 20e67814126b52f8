"""The errors the artifact service raises: each names the artifact, the component and what to do."""

from __future__ import annotations

from ..kernel import ActorsError


class ArtifactError(ActorsError, RuntimeError):
    """An artifact could not be fetched or installed; the deployment must not go on."""


class ArtifactSpecError(ArtifactError, ValueError):
    """An artifact's description (URI, digest, algorithm, permission) is not usable."""


class BucketNameRefused(ArtifactSpecError):
    """An S3 bucket name breaks a model-source rule (periods), refused before any request."""


class ArtifactNotFound(ArtifactError, FileNotFoundError):
    """The artifact's object or file does not exist."""


class ArtifactAccessDenied(ArtifactError, PermissionError):
    """The device's credentials may not read the object (the message names them and the fix)."""


class UnsupportedEncryption(ArtifactError, ValueError):
    """The object is encrypted with SSE-C (customer-provided keys): not a usable model source."""


class DigestMismatch(ArtifactError, ValueError):
    """The downloaded bytes do not hash to the recipe's ``Digest`` (both are in the message)."""


class DownloadFailed(ArtifactError, ConnectionError):
    """The download kept failing after the bounded retries (the last cause is chained)."""


class UnsafeArchive(ArtifactError, ValueError):
    """A ZIP archive was refused: an entry escapes the folder, repeats, or the archive is a bomb."""


class ArtifactDiskFull(ArtifactError, OSError):
    """There is not enough free disk space for an artifact (found before it is downloaded)."""
