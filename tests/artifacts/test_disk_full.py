"""A full disk fails the fetch with ArtifactDiskFull naming the artifact and what to do,
and keeps nothing: an S3 object too large for the free space is refused before its first
GET (the file is preallocated), a local file or a ZIP's contents that fill the disk on
the way are removed, and the store takes the next artifact that fits.

The store lives on an 8 MiB tmpfs mounted in a private mount namespace (``unshare``:
no privileges needed where user namespaces are allowed), so the disk really is full."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import BUCKET, MiB, S3Server, make_zip, pattern, recipe_digest

DISK = 8 * MiB

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import anyio
    from actors.artifacts import ArtifactSpec, ArtifactStore, S3Settings, Unarchive

    root = Path(sys.argv[1])
    settings = S3Settings(**json.loads(sys.argv[2]))
    cases = json.loads(sys.argv[3])

    async def main():
        async with ArtifactStore(root / "store", settings) as store:
            for name, uri, digest, unarchive in cases:
                spec = ArtifactSpec(uri, digest, unarchive=Unarchive.ZIP if unarchive else
                                    Unarchive.NONE)
                try:
                    await store.fetch("com.example." + name, "1.0.0", [spec])
                    outcome = {"error": None}
                except Exception as error:
                    outcome = {"error": type(error).__name__, "message": str(error)}
                outcome["left"] = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                         if p.is_file() or p.is_symlink())
                print(json.dumps({"case": name, **outcome}), flush=True)

    anyio.run(main)
""")


def _namespace(probe_folder: Path) -> list[str]:
    """The command prefix that runs a shell with a private mount namespace, or skip."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    prefix = [unshare, "--user", "--map-root-user", "--mount"]
    probe_folder.mkdir()
    probe = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs -o size=1m none {probe_folder}"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    return prefix


def test_a_full_disk_fails_the_fetch_and_keeps_nothing(moto: S3Server, tmp_path: Path) -> None:
    prefix = _namespace(tmp_path / "probe")
    big = pattern(12 * MiB, b"too big")
    moto.client().put_object(Bucket=BUCKET, Key="full/model.bin", Body=big)
    local = tmp_path / "local-model.bin"
    local.write_bytes(big)
    # Stored, not deflated: 5 MiB in the cache plus 5 MiB unpacked do not fit in 8 MiB.
    archive = make_zip([("model/params", os.urandom(5 * MiB))], compression=0)
    (tmp_path / "bundle.zip").write_bytes(archive)
    small = b"cat\ndog\n"
    moto.client().put_object(Bucket=BUCKET, Key="full/labels.txt", Body=small)
    cases = [
        ["S3", f"s3://{BUCKET}/full/model.bin", recipe_digest(big), False],
        ["Local", local.as_uri(), recipe_digest(big), False],
        ["Zip", (tmp_path / "bundle.zip").as_uri(), recipe_digest(archive), True],
        ["Labels", f"s3://{BUCKET}/full/labels.txt", recipe_digest(small), False],
    ]
    settings = moto.settings()
    fields = {"endpoint_url": settings.endpoint_url, "region": settings.region,
              "access_key_id": settings.access_key_id,
              "secret_access_key": settings.secret_access_key, "addressing_style": "path"}
    disk = tmp_path / "disk"
    disk.mkdir()
    shell = (f"mount -t tmpfs -o size={DISK} none {disk} && "
             f'exec "$0" -c "$1" {disk} "$2" "$3"')
    child = subprocess.run([*prefix, "sh", "-c", shell, sys.executable, SCRIPT,
                            json.dumps(fields), json.dumps(cases)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    outcomes = {o["case"]: o for o in map(json.loads, child.stdout.splitlines())}

    s3 = outcomes["S3"]
    assert s3["error"] == "ArtifactDiskFull", s3
    assert f"s3://{BUCKET}/full/model.bin of com.example.S3 1.0.0" in s3["message"]
    assert f"not enough free disk space for its {12 * MiB} bytes" in s3["message"]
    assert "free some space" in s3["message"]

    for name, stage in (("Local", "copied"), ("Zip", "unpacked")):
        outcome = outcomes[name]
        assert outcome["error"] == "ArtifactDiskFull", outcome
        assert f"com.example.{name} 1.0.0" in outcome["message"]
        assert f"filled up while it was {stage}" in outcome["message"]
        assert "free some space" in outcome["message"]

    for name in ("S3", "Local", "Zip"):
        assert outcomes[name]["left"] == [], outcomes[name]
    # The space the failures took is free again: the next artifact that fits is installed.
    assert outcomes["Labels"]["error"] is None, outcomes["Labels"]
    assert any(p.endswith("/labels.txt") for p in outcomes["Labels"]["left"])
