"""S3 settings and the model-source rules that need no client: kept apart from
the aiobotocore client (``_s3``) so that importing the runtime does not import
aiobotocore and aiohttp (a third of its start-up) until an S3 URI is fetched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ._errors import ArtifactSpecError, BucketNameRefused

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3. Unset fields come from the usual AWS chain (environment, profile, role).

    ``endpoint_url`` points at an S3-compatible server. A request that fails on the
    way (connection refused or broken, a timeout, throttling, a 5xx answer) is tried
    again, with backoff from ``backoff`` doubling up to ``backoff_max``, for as long as
    its failures in a row span less than ``retry_window`` seconds (ten minutes: a
    device on a flaky link rides out an outage of the link or of the server) and,
    when ``attempts`` is set, for at most that many failed attempts in a row. A
    download resumes each retry where the last one stopped, and its window starts
    again whenever bytes arrive.
    An object larger than twice ``part_size`` is fetched as parts of that size by
    ``concurrency`` ranged GETs side by side (1: always one stream); ``chunk_size``
    is how much of a stream is gathered before it is written.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    attempts: int | None = None
    retry_window: float = 600.0
    backoff: float = 0.25
    backoff_max: float = 5.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    chunk_size: int = 1 << 20
    part_size: int = 8 << 20
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HeadObject said about an object that may be downloaded."""

    size: int
    etag: str | None
    encryption: str | None


@dataclass
class Counters:
    """Running totals of one fetch (made into a frozen FetchStatistics at the end)."""

    requests: int = 0
    bytes_downloaded: int = 0
    resumed: int = 0
    retries: int = 0
    from_cache: int = 0


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key is taken as written."""
    rest = uri[len("s3://"):]
    bucket, _slash, key = rest.partition("/")
    if not bucket or not key:
        raise ArtifactSpecError(f"artifact {uri!r}: expected s3://bucket/key")
    return bucket, key


def check_bucket_name(bucket: str, uri: str) -> None:
    """Refuse bucket names Greengrass cannot use as model sources, before any request."""
    if "." in bucket:
        raise BucketNameRefused(
            f"{uri}: bucket name {bucket!r} contains periods; Greengrass model sources must be "
            "in buckets whose names have no periods (virtual-hosted-style addressing over TLS "
            "cannot match such a name to the S3 certificate); copy the object to a bucket "
            "without periods and update the recipe's Uri")
    if not _BUCKET.fullmatch(bucket):
        raise BucketNameRefused(
            f"{uri}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase "
            "letters, digits and hyphens, starting and ending with a letter or digit)")


def sse_c_message(uri: str) -> str:
    return (f"{uri} is encrypted with SSE-C (customer-provided keys), which is not supported "
            "for model sources; re-upload it with SSE-S3 or SSE-KMS")
