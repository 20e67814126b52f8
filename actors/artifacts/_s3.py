"""Amazon S3 model sources through aiobotocore, with Greengrass's rules checked before any download.

Before a byte is downloaded: the bucket name is checked (no periods), then
HeadObject (without SSE-C headers) says what the object is: 200 -> its size,
ETag and encryption (SSE-S3 and SSE-KMS are fine); 403 -> the device may not
read it; 404 -> it does not exist; 400 -> a one-byte ranged GetObject tells
whether the server wants a customer-provided key (SSE-C, refused).

The download is one streamed GetObject written to a temporary file; after a
connection error or a throttling answer it goes on with ``Range: bytes=N-``
and ``If-Match: <ETag>`` (the same object, from the first byte not yet
written), a bounded number of times in a row with exponential backoff.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, NoReturn

import aiohttp
import anyio
from aiobotocore.config import AioConfig  # type: ignore[import-untyped, unused-ignore]
from aiobotocore.session import AioSession  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    ConnectionError as BotoConnectionError,
)

from ._errors import (
    ArtifactAccessDenied,
    ArtifactError,
    ArtifactNotFound,
    DownloadFailed,
    UnsupportedEncryption,
)
from ._progress import RateMeter
from ._s3_rules import (
    Counters,
    ObjectInfo,
    S3Settings,
    check_bucket_name,
    sse_c_message,
)

_RETRYABLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                              "InternalError", "ServiceUnavailable", "503", "500", "502", "504"})
_TRANSPORT_ERRORS = (BotoConnectionError, HTTPClientError, IncompleteReadError,
                     aiohttp.ClientError, ConnectionError, TimeoutError)


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


class S3Source:
    """An aiobotocore S3 client with the model-source checks and the resumable download.

    Use as ``async with S3Source(settings) as s3``; the client is made on entry.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._session = AioSession(profile=settings.profile)
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._identity: str | None = None

    def _client_args(self, service: str, **config: Any) -> dict[str, Any]:
        s = self.settings
        args: dict[str, Any] = {
            "region_name": s.region,
            "endpoint_url": s.endpoint_url,
            "config": AioConfig(
                connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                # Retries are ours: they resume a download instead of starting it again.
                retries={"total_max_attempts": 1},
                **config),
        }
        if s.access_key_id is not None:
            args.update(aws_access_key_id=s.access_key_id,
                        aws_secret_access_key=s.secret_access_key,
                        aws_session_token=s.session_token)
        return args

    async def __aenter__(self) -> S3Source:
        args = self._client_args("s3", s3={"addressing_style": self.settings.addressing_style})
        self._client = await self._stack.enter_async_context(
            self._session.create_client("s3", **args))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _request(self, counters: Counters, uri: str, operation: str,
                       call: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """One API call with bounded, backed-off retries on transport errors and throttling."""
        failures = 0
        while True:
            counters.requests += 1
            try:
                return await call(**kwargs)
            except NoCredentialsError:
                raise ArtifactAccessDenied(
                    f"{uri}: no AWS credentials found for {operation}; configure them the usual "
                    "way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance "
                    "role) or in the S3 settings") from None
            except ClientError as error:
                if _code(error) not in _RETRYABLE_CODES and _status(error) < 500:
                    raise
                failures = await self._backoff(counters, uri, failures, error)
            except _TRANSPORT_ERRORS as error:
                failures = await self._backoff(counters, uri, failures, error)

    async def _backoff(self, counters: Counters, uri: str, failures: int,
                       error: BaseException) -> int:
        failures += 1
        if failures >= self.settings.attempts:
            raise DownloadFailed(
                f"{uri}: gave up after {failures} failed attempts in a row "
                f"({type(error).__name__}: {error}); check that the S3 endpoint is reachable "
                "and deploy again") from error
        counters.retries += 1
        delay = min(self.settings.backoff * 2 ** (failures - 1), self.settings.backoff_max)
        await anyio.sleep(delay * random.uniform(0.5, 1.0))
        return failures

    async def check(self, bucket: str, key: str, uri: str, counters: Counters) -> ObjectInfo:
        """Apply the model-source rules to one object; return what a download needs to know."""
        check_bucket_name(bucket, uri)
        try:
            head = await self._request(counters, uri, "HeadObject", self._client.head_object,
                                       Bucket=bucket, Key=key)
        except ClientError as error:
            status = _status(error)
            if status == 400:
                await self._confirm_sse_c(bucket, key, uri, counters)
            await self._raise_for(error, bucket, key, uri, "HeadObject")
        if head.get("SSECustomerAlgorithm"):
            raise UnsupportedEncryption(sse_c_message(uri))
        return ObjectInfo(int(head["ContentLength"]), head.get("ETag"),
                          head.get("ServerSideEncryption"))

    async def _confirm_sse_c(self, bucket: str, key: str, uri: str, counters: Counters) -> None:
        """HeadObject answered a bare 400: ask for one byte to learn why."""
        try:
            response = await self._request(counters, uri, "GetObject", self._client.get_object,
                                           Bucket=bucket, Key=key, Range="bytes=0-0")
        except ClientError as error:
            text = f"{_code(error)} {_message(error)}".lower()
            if "customer" in text or "sse-c" in text or "sse_c" in text:
                raise UnsupportedEncryption(sse_c_message(uri)) from None
            await self._raise_for(error, bucket, key, uri, "GetObject")
        else:
            async with response["Body"] as body:
                await body.read()

    async def _raise_for(self, error: ClientError, bucket: str, key: str, uri: str,
                         operation: str) -> NoReturn:
        status, code = _status(error), _code(error)
        if status == 403 or code == "AccessDenied":
            identity = await self.identity()
            raise ArtifactAccessDenied(
                f"{uri}: AccessDenied on {operation} for bucket {bucket!r}, key {key!r}, with "
                f"the credentials of {identity}; grant s3:GetObject on "
                f"arn:aws:s3:::{bucket}/{key} to that identity (on a Greengrass device: the "
                "token exchange role's policy) and deploy again") from None
        if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "NotFound"):
            raise ArtifactNotFound(
                f"{uri}: not found ({operation} answered {code or status}); check the bucket "
                "and key in the recipe's Uri and that the object was uploaded") from None
        if status == 412:
            raise ArtifactError(
                f"{uri}: the object changed while it was being downloaded; deploy again") from None
        raise ArtifactError(
            f"{uri}: {operation} failed with HTTP {status} {code}: {_message(error)}") from None

    async def identity(self) -> str:
        """Who the credentials are: the caller ARN when STS answers, and the access key id.

        Never the secret. Best effort: an identity lookup that fails leaves the key id.
        """
        if self._identity is not None:
            return self._identity
        access_key = "unknown credentials"
        credentials = await self._session.get_credentials() if self.settings.access_key_id \
            is None else None
        if self.settings.access_key_id is not None:
            access_key = f"access key id {self.settings.access_key_id}"
        elif credentials is not None:
            frozen = await credentials.get_frozen_credentials()
            access_key = f"access key id {frozen.access_key}"
        arn = None
        try:
            with anyio.fail_after(3):
                args = self._client_args("sts")
                async with self._session.create_client("sts", **args) as sts:
                    arn = (await sts.get_caller_identity()).get("Arn")
        except (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError):
            pass
        self._identity = f"{arn} ({access_key})" if arn else access_key
        return self._identity

    async def download(self, bucket: str, key: str, uri: str, info: ObjectInfo,
                       feed: Callable[[list[bytes]], Awaitable[None]], meter: RateMeter,
                       counters: Counters) -> None:
        """Stream the object into ``feed``; resume with a ranged GET after a broken connection."""
        offset = 0
        failures = 0
        chunk = self.settings.chunk_size
        while offset < info.size or offset == 0:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if info.etag:
                kwargs["IfMatch"] = info.etag
            if offset:
                kwargs["Range"] = f"bytes={offset}-"
                counters.resumed += 1
            progressed = False
            try:
                try:
                    response = await self._request(counters, uri, "GetObject",
                                                   self._client.get_object, **kwargs)
                except ClientError as error:
                    await self._raise_for(error, bucket, key, uri, "GetObject")
                # A server that ignores Range sends the whole object again: skip what we have.
                skip = offset if offset and response["ResponseMetadata"].get(
                    "HTTPStatusCode") == 200 else 0
                async with response["Body"] as body:
                    parts: list[bytes] = []
                    pending = 0
                    try:
                        while data := await body.read(chunk):
                            if skip:
                                cut = min(skip, len(data))
                                data, skip = data[cut:], skip - cut
                                if not data:
                                    continue
                            parts.append(data)
                            pending += len(data)
                            if pending >= chunk:
                                await self._deliver(parts, pending, feed, meter, counters)
                                offset += pending
                                parts, pending, progressed = [], 0, True
                    finally:
                        # Bytes that arrived before a broken connection are good: keep them.
                        if parts:
                            await self._deliver(parts, pending, feed, meter, counters)
                            offset += pending
                            progressed = True
                if offset >= info.size:
                    return
                raise IncompleteReadError(actual_bytes=offset, expected_bytes=info.size)
            except _TRANSPORT_ERRORS as error:
                failures = 0 if progressed else failures
                failures = await self._backoff(counters, uri, failures, error)
                meter.rewind(offset)

    @staticmethod
    async def _deliver(parts: list[bytes], size: int,
                       feed: Callable[[list[bytes]], Awaitable[None]], meter: RateMeter,
                       counters: Counters) -> None:
        await feed(parts)
        counters.bytes_downloaded += size
        meter.add(size)
