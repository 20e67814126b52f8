"""Fetching from a real S3 server (moto, on 127.0.0.1): objects of every kind, the
model-source rules, digests, the cache and garbage collection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from actors.artifacts import (
    Access,
    ArtifactAccessDenied,
    ArtifactNotFound,
    ArtifactSpec,
    ArtifactStore,
    BucketNameRefused,
    DigestMismatch,
    DownloadFailed,
    Permission,
    Progress,
    S3Settings,
    Unarchive,
)

from .conftest import (
    BUCKET,
    MiB,
    S3Server,
    dead_endpoint,
    files_under,
    make_zip,
    pattern,
    recipe_digest,
)

pytestmark = pytest.mark.anyio


def put(server: S3Server, key: str, data: bytes, **extra: object) -> str:
    server.client().put_object(Bucket=BUCKET, Key=key, Body=data, **extra)
    return f"s3://{BUCKET}/{key}"


async def test_plain_object_is_installed_read_only_under_artifacts_path(
        moto: S3Server, tmp_path: Path) -> None:
    data = pattern(3 * MiB)
    uri = put(moto, "plain/model.bin", data)
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    installed = tmp_path / "artifacts" / "com.example.Model" / "1.0.0" / "model.bin"
    assert fetched.path == installed.parent
    assert fetched.files == {uri: installed}
    assert fetched.decompressed_path == (
        tmp_path / "artifacts-unarchived" / "com.example.Model" / "1.0.0")
    assert installed.read_bytes() == data
    assert stat.S_IMODE(installed.stat().st_mode) == 0o400  # Read OWNER, Execute NONE
    assert not stat.S_IMODE(installed.parent.stat().st_mode) & 0o222
    assert fetched.statistics.bytes_downloaded == len(data)


async def test_multipart_object(moto: S3Server, tmp_path: Path) -> None:
    data = pattern(11 * MiB + 123)
    client = moto.client()
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="multi/model.bin")
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), 1):
        etag = client.upload_part(Bucket=BUCKET, Key="multi/model.bin", PartNumber=number,
                                  UploadId=upload["UploadId"],
                                  Body=data[start:start + 5 * MiB])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=BUCKET, Key="multi/model.bin",
                                     UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(f"s3://{BUCKET}/multi/model.bin",
                                                  recipe_digest(data))])
    assert fetched.files[f"s3://{BUCKET}/multi/model.bin"].read_bytes() == data


@pytest.mark.parametrize("encryption", ["SSE-S3", "SSE-KMS"])
async def test_sse_s3_and_sse_kms_objects_download(moto: S3Server, tmp_path: Path,
                                                    encryption: str) -> None:
    import boto3

    data = os.urandom(MiB)
    if encryption == "SSE-S3":
        extra: dict[str, object] = {"ServerSideEncryption": "AES256"}
    else:
        kms = boto3.client("kms", endpoint_url=moto.endpoint, region_name="us-east-1",
                           aws_access_key_id=moto.admin.access_key_id,
                           aws_secret_access_key=moto.admin.secret_access_key)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    uri = put(moto, f"enc/{encryption}.bin", data, **extra)
    head = moto.client().head_object(Bucket=BUCKET, Key=f"enc/{encryption}.bin")
    assert head["ServerSideEncryption"] == extra["ServerSideEncryption"]
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0",
                                    [ArtifactSpec(uri, recipe_digest(data))])
    assert fetched.files[uri].read_bytes() == data


async def test_bucket_with_periods_is_refused_before_any_request(
        moto: S3Server, tmp_path: Path) -> None:
    moto.client().create_bucket(Bucket="my.models")  # the server would serve it
    moto.client().put_object(Bucket="my.models", Key="m.bin", Body=b"model")
    # Whatever the endpoint, the rule applies first: here nothing even listens.
    async with ArtifactStore(tmp_path, S3Settings(endpoint_url=dead_endpoint(),
                                                  attempts=1)) as store:
        with pytest.raises(BucketNameRefused, match=r"'my\.models'.*periods") as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec("s3://ok-bucket/a.bin"),
                               ArtifactSpec("s3://my.models/m.bin")])
    assert "virtual-hosted-style" in str(caught.value)
    assert files_under(tmp_path) == []


def test_a_bucket_name_ending_in_a_newline_is_refused() -> None:
    from actors.artifacts._s3_rules import check_bucket_name

    with pytest.raises(BucketNameRefused, match="not a valid S3 bucket name"):
        check_bucket_name("models\n", "s3://models\n/m.bin")


async def test_access_denied_names_bucket_key_and_identity_never_the_secret(
        moto: S3Server, tmp_path: Path) -> None:
    data = b"weights" * 1000
    uri = put(moto, "private/model.bin", data)
    async with ArtifactStore(tmp_path, moto.settings(moto.no_read)) as store:
        with pytest.raises(ArtifactAccessDenied) as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(uri, recipe_digest(data))])
    message = str(caught.value)
    assert f"bucket '{BUCKET}'" in message and "key 'private/model.bin'" in message
    assert moto.no_read.access_key_id in message
    assert "user/no-read" in message  # the caller identity from STS
    assert "s3:GetObject" in message
    assert moto.no_read.secret_access_key not in message
    assert isinstance(caught.value, PermissionError)
    assert files_under(tmp_path) == []


async def test_missing_object(moto: S3Server, tmp_path: Path) -> None:
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        with pytest.raises(ArtifactNotFound, match="no/such.bin"):
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(f"s3://{BUCKET}/no/such.bin")])
    assert files_under(tmp_path) == []


async def test_corrupted_object_fails_with_both_digests_and_leaves_nothing(
        moto: S3Server, tmp_path: Path) -> None:
    good = pattern(2 * MiB)
    corrupted = bytearray(good)
    corrupted[MiB] ^= 0xFF
    first = put(moto, "corrupt/ok.bin", b"fine")
    uri = put(moto, "corrupt/model.bin", bytes(corrupted))
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        with pytest.raises(DigestMismatch) as caught:
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(first, recipe_digest(b"fine")),
                               ArtifactSpec(uri, recipe_digest(good))])
    assert recipe_digest(good) in str(caught.value)
    assert recipe_digest(bytes(corrupted)) in str(caught.value)
    assert "com.example.Model" in str(caught.value)
    assert files_under(tmp_path) == []


async def test_same_object_is_downloaded_once_and_redeployment_makes_no_request(
        moto: S3Server, tmp_path: Path) -> None:
    data = pattern(2 * MiB)
    uri = put(moto, "shared/model.bin", data)
    spec = ArtifactSpec(uri, recipe_digest(data))
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        first = await store.fetch("com.example.A", "1.0.0", [spec])
        second = await store.fetch("com.example.B", "2.0.0", [spec])
    assert first.statistics.requests >= 2 and second.statistics.requests == 0
    assert first.files[uri].stat().st_ino == second.files[uri].stat().st_ino
    # A new store (a restarted device) whose S3 endpoint is gone: the cache answers.
    async with ArtifactStore(tmp_path, S3Settings(endpoint_url=dead_endpoint(),
                                                  attempts=1)) as store:
        again = await store.fetch("com.example.A", "1.0.0", [spec])
        other = await store.fetch("com.example.A", "1.1.0", [spec])
    assert again.statistics.requests == 0 and other.statistics.requests == 0
    assert other.files[uri].read_bytes() == data


async def test_gc_removes_components_no_longer_deployed_and_their_cache(
        moto: S3Server, tmp_path: Path) -> None:
    old, new = b"old model" * 1000, b"new model" * 1000
    old_uri, new_uri = put(moto, "gc/old.bin", old), put(moto, "gc/new.bin", new)
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        await store.fetch("com.example.Model", "1.0.0",
                          [ArtifactSpec(old_uri, recipe_digest(old))])
        kept = await store.fetch("com.example.Model", "2.0.0",
                                 [ArtifactSpec(new_uri, recipe_digest(new))])
        report = await store.gc({("com.example.Model", "2.0.0")})
    assert report.components == (("com.example.Model", "1.0.0"),)
    assert report.cache_files == 1 and report.bytes_freed == len(old)
    assert not (tmp_path / "artifacts" / "com.example.Model" / "1.0.0").exists()
    assert kept.files[new_uri].read_bytes() == new
    assert {p.read_bytes() for p in files_under(tmp_path / "artifact-cache")} == {new}


async def test_zip_from_s3_is_unarchived_with_the_recipe_permissions(
        moto: S3Server, tmp_path: Path) -> None:
    archive = make_zip([("model/graph.json", b"{}"), ("model/params", os.urandom(1000)),
                        ("run.sh", b"#!/bin/sh\n")])
    uri = put(moto, "zip/resnet18.zip", archive)
    spec = ArtifactSpec(uri, recipe_digest(archive), unarchive=Unarchive.ZIP,
                        permission=Permission(read=Access.ALL, execute=Access.OWNER))
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        fetched = await store.fetch("com.example.Model", "1.0.0", [spec])
    folder = fetched.decompressed_path / "resnet18"
    assert (folder / "model" / "graph.json").read_bytes() == b"{}"
    assert stat.S_IMODE((folder / "run.sh").stat().st_mode) == 0o544
    assert stat.S_IMODE(fetched.files[uri].stat().st_mode) == 0o544
    for folder_path in (folder, folder / "model", fetched.path):
        assert stat.S_IMODE(folder_path.stat().st_mode) == 0o555


async def test_progress_reports_bytes_and_rate(moto: S3Server, tmp_path: Path) -> None:
    data = pattern(4 * MiB)
    uri = put(moto, "progress/model.bin", data)
    reports: list[Progress] = []
    async with ArtifactStore(tmp_path, moto.settings(chunk_size=MiB)) as store:
        await store.fetch("com.example.Model", "1.0.0", [ArtifactSpec(uri, recipe_digest(data))],
                          progress=reports.append)
    assert len(reports) >= 4
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert reports[-1].finished and reports[-1].done == reports[-1].total == len(data)
    assert reports[-1].rate > 0 and reports[-1].component == "com.example.Model"


@pytest.fixture(scope="module")
def large_object(moto: S3Server) -> tuple[str, str]:
    """A 110 MiB object (multipart upload), made once for the module."""
    import io

    from boto3.s3.transfer import TransferConfig

    data = pattern(110 * MiB)
    moto.client().upload_fileobj(io.BytesIO(data), BUCKET, "large/model.bin",
                                 Config=TransferConfig(multipart_chunksize=16 * MiB))
    return f"s3://{BUCKET}/large/model.bin", recipe_digest(data)


@pytest.mark.slow
async def test_large_object(moto: S3Server, large_object: tuple[str, str],
                            tmp_path: Path) -> None:
    uri, digest = large_object
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        fetched = await store.fetch("com.example.Large", "1.0.0", [ArtifactSpec(uri, digest)])
    assert fetched.files[uri].stat().st_size == 110 * MiB
    assert fetched.statistics.bytes_downloaded == 110 * MiB


async def test_same_content_with_another_permission_needs_no_request(
        moto: S3Server, tmp_path: Path) -> None:
    data = b"#!/bin/sh\n" * 100
    uri = put(moto, "modes/run.sh", data)
    async with ArtifactStore(tmp_path, moto.settings()) as store:
        first = await store.fetch("com.example.A", "1.0.0",
                                  [ArtifactSpec(uri, recipe_digest(data))])
        second = await store.fetch("com.example.B", "1.0.0", [ArtifactSpec(
            uri, recipe_digest(data), permission=Permission(Access.ALL, Access.ALL))])
    assert second.statistics.requests == 0
    assert stat.S_IMODE(first.files[uri].stat().st_mode) == 0o400
    assert stat.S_IMODE(second.files[uri].stat().st_mode) == 0o555


async def test_unreachable_endpoint_gives_up_after_bounded_retries(tmp_path: Path) -> None:
    settings = S3Settings(endpoint_url=dead_endpoint(), region="us-east-1",
                          access_key_id="k", secret_access_key="s", attempts=3, backoff=0.01)
    async with ArtifactStore(tmp_path, settings) as store:
        with pytest.raises(DownloadFailed, match="gave up after 3 failed attempts"):
            await store.fetch("com.example.Model", "1.0.0",
                              [ArtifactSpec(f"s3://{BUCKET}/model.bin", recipe_digest(b""))])
    assert files_under(tmp_path) == []


async def test_responses_are_read_with_a_large_buffer(moto: S3Server) -> None:
    # aiohttp's 64 KiB default pauses a fast download thousands of times per GiB;
    # aiobotocore offers no setting for it, so ours is put on its sessions (a change
    # in either library that drops it shows here).
    from actors.artifacts._s3 import READ_BUFFER, S3Source

    put(moto, "buffer/model.bin", b"m" * 1000)
    async with S3Source(moto.settings()) as s3:
        response = await s3._client.get_object(Bucket=BUCKET, Key="buffer/model.bin")
        async with response["Body"] as body:
            assert body.raw_stream.content._high_water == 2 * READ_BUFFER
            assert await body.read() == b"m" * 1000
