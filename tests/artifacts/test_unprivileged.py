"""The store as an unprivileged user sees it: read-only folders must not stop a
re-deployment, a failed fetch's clean-up or garbage collection. Root ignores file
modes, so when the tests run as root the child interpreter runs without the
capabilities that let it (``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import make_zip, recipe_digest

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import anyio
    from actors.artifacts import ArtifactSpec, ArtifactStore, DigestMismatch, Unarchive

    folder = Path(sys.argv[1])
    zip_uri, digest = (folder / "bundle.zip").as_uri(), sys.argv[2]
    spec = ArtifactSpec(zip_uri, digest, unarchive=Unarchive.ZIP)

    async def main():
        async with ArtifactStore(folder / "store") as store:
            await store.fetch("com.example.A", "1.0.0", [spec])
            await store.fetch("com.example.A", "1.0.0", [spec, ArtifactSpec(
                (folder / "labels.txt").as_uri())])       # changed list: rebuilt and swapped
            try:
                await store.fetch("com.example.A", "1.0.0", [ArtifactSpec(zip_uri, "A" * 43 + "=")])
            except DigestMismatch:
                pass
            await store.fetch("com.example.B", "1.0.0", [spec])
            report = await store.gc({("com.example.B", "1.0.0")})
            assert report.components == (("com.example.A", "1.0.0"),), report
        print("ok")

    anyio.run(main)
""")


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="artifacts-unprivileged-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_redeploy_failure_and_gc_work_without_privileges(shared_folder: Path) -> None:
    archive = make_zip([("model/params", b"p" * 100), ("model/graph.json", b"{}")])
    (shared_folder / "bundle.zip").write_bytes(archive)
    (shared_folder / "labels.txt").write_text("cat\n")
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    done = subprocess.run([*prefix, sys.executable, "-c", SCRIPT, str(shared_folder),
                           recipe_digest(archive)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
