"""The registry's S3 client: aiobotocore, with a count of the requests it made.

Credentials and the endpoint come from :class:`~actors.artifacts.S3Settings`
(unset fields from the usual AWS chain: environment, profile, role).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from ..artifacts import S3Settings
from ._errors import RegistryError


@dataclass(frozen=True)
class RegistryUrl:
    """``s3://bucket/prefix``: where a registry lives."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> RegistryUrl:
        if not text.startswith("s3://"):
            raise RegistryError(f"--registry {text!r}: expected s3://bucket/prefix")
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not bucket:
            raise RegistryError(f"--registry {text!r}: no bucket; expected s3://bucket/prefix")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


class S3Client:
    """``async with S3Client(settings) as s3``: an aiobotocore S3 client; ``requests``
    counts the calls made through :meth:`call`."""

    def __init__(self, settings: S3Settings | None = None) -> None:
        self.settings = settings or S3Settings()
        self.requests = 0
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def __aenter__(self) -> S3Client:
        from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
        from aiobotocore.session import AioSession  # type: ignore[import-untyped, unused-ignore]

        s = self.settings
        # One session per profile for the process: a fresh one loads botocore's service
        # models again (0.1-0.4 s of CPU), which dozens of agents in one process notice.
        session = _SESSIONS.get(s.profile)
        if session is None:
            session = _SESSIONS[s.profile] = AioSession(profile=s.profile)
        config = AioConfig(s3={"addressing_style": s.addressing_style},
                           connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                           # The registry's small requests: botocore's standard retries
                           # (the artifact store has its own outage window).
                           retries={"total_max_attempts": s.attempts or 5, "mode": "standard"},
                           max_pool_connections=32)
        self._client = await self._stack.enter_async_context(session.create_client(
            "s3", endpoint_url=s.endpoint_url, region_name=s.region or "us-east-1",
            aws_access_key_id=s.access_key_id, aws_secret_access_key=s.secret_access_key,
            aws_session_token=s.session_token, config=config))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, **kwargs: Any) -> Any:
        self.requests += 1
        return await getattr(self._client, operation)(**kwargs)


_SESSIONS: dict[str | None, Any] = {}


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
