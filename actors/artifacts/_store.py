"""The artifact store: fetch a component's artifacts into place, content-addressed, atomically.

Layout under ``root`` (Greengrass's ``packages/`` folder)::

    artifacts/<name>/<version>/<file>                      {artifacts:path}, read-only
    artifacts-unarchived/<name>/<version>/<zip stem>/...   {artifacts:decompressedPath}
    artifact-cache/<algorithm>/<hex>-<mode>     one file per content and file mode
    artifact-state/<name>/<version>.json        what was fetched, for the no-request path
    artifact-tmp/                               downloads and staging, never left behind

(the first two as Greengrass lays them out; the others are ours, named so as
not to collide with anything else kept in ``packages/``).

Installed files are hard links to the cache, so an object shared by two
components (or two versions) is downloaded and stored once, and a cache file
whose link count has dropped to one is no longer used by anything: that is
what :meth:`ArtifactStore.gc` removes. A fetch builds the component's folders
in ``artifact-tmp/`` and renames them into place only when every artifact is there and
verified; after a failure nothing it made is left in the store.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from . import _spec
from ._digest import Digest, hash_name, parse_digest
from ._errors import ArtifactDiskFull, ArtifactSpecError, DigestMismatch
from ._local import copy_hashing, folder_files, local_folder, local_source
from ._progress import ProgressCallback, RateMeter
from ._s3_rules import Counters, S3Settings, check_bucket_name, split_s3_uri
from ._sink import PartFile
from ._spec import Access, ArtifactSpec, FetchedArtifacts, FetchStatistics, Permission, Unarchive
from ._unzip import UnarchiveLimits, extract_zip, folder_mode, force_rmtree, make_read_only

if TYPE_CHECKING:
    from ._s3 import S3Source

CACHE, STATE, TMP = "artifact-cache", "artifact-state", "artifact-tmp"
log = logging.getLogger("actors.artifacts")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True, slots=True)
class GcReport:
    """What :meth:`ArtifactStore.gc` removed."""

    components: tuple[tuple[str, str], ...]
    cache_files: int
    bytes_freed: int


@dataclass(frozen=True, slots=True)
class _Planned:
    spec: ArtifactSpec
    digest: Digest | None
    local: Path | None
    path: str = ""  # under {artifacts:path}, when not the URI's file name (folder files)

    @property
    def target(self) -> str:
        return self.path or self.spec.filename


@dataclass
class _Fetch:
    """The mutable state of one fetch: what it counted and what it created (to undo)."""

    component: str
    version: str
    counters: Counters = field(default_factory=Counters)
    new_blobs: list[Path] = field(default_factory=list)

    def where(self, spec: ArtifactSpec) -> str:
        """How errors name an artifact of this fetch: its URI, component and version."""
        return f"{spec.uri} of {self.component} {self.version}"


class ArtifactStore:
    """Fetches component artifacts (S3, ``file://``, local paths) into ``root``.

    Use as ``async with ArtifactStore(root, S3Settings(...)) as store``; the S3
    client is made on the first S3 request and closed on exit (or :meth:`aclose`).
    """

    def __init__(self, root: Path, s3: S3Settings | None = None,
                 limits: UnarchiveLimits | None = None) -> None:
        self.root = Path(root)
        self.s3_settings = s3 or S3Settings()
        self.limits = limits or UnarchiveLimits()
        self._stack = AsyncExitStack()
        self._s3: S3Source | None = None
        self._s3_lock = anyio.Lock()
        self._locks: dict[str, anyio.Lock] = {}
        # Fetches run side by side; a collection waits for them and they wait for it.
        self._turns = anyio.Condition()
        self._fetching = 0
        self._collecting = False

    async def __aenter__(self) -> ArtifactStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the S3 client, if one was made."""
        self._s3 = None
        await self._stack.aclose()

    def artifacts_path(self, component: str, version: str) -> Path:
        """``{artifacts:path}`` of a component version."""
        return _spec.artifacts_path(self.root, component, version)

    def decompressed_path(self, component: str, version: str) -> Path:
        """``{artifacts:decompressedPath}`` of a component version."""
        return _spec.decompressed_path(self.root, component, version)

    def _state_path(self, component: str, version: str) -> Path:
        return self.root / STATE / component / f"{version}.json"

    def _lock(self, key: str) -> anyio.Lock:
        return self._locks.setdefault(key, anyio.Lock())

    async def _source(self) -> S3Source:
        async with self._s3_lock:
            if self._s3 is None:
                from ._s3 import S3Source  # aiobotocore + aiohttp: only when S3 is used

                self._s3 = await self._stack.enter_async_context(S3Source(self.s3_settings))
            return self._s3

    async def fetch(self, component: str, version: str, artifacts: Sequence[ArtifactSpec],
                    progress: ProgressCallback | None = None,
                    artifact_dir: Path | None = None) -> FetchedArtifacts:
        """Put ``artifacts`` in place for ``component`` ``version`` and return where they are.

        ``artifact_dir`` is a local deployment's ``--artifactDir``: the whole
        ``<dir>/<name>/<version>/`` folder is copied in (as the Greengrass CLI
        does), and ``<dir>/<name>/<version>/<file>`` is used instead of a recipe
        URI naming that file. ``docker:`` images are not files: they are left to
        Docker (this runtime pulls none). Raises an :class:`ArtifactError`
        subclass naming the artifact and what to do; the store is then as it was
        before the call.
        """
        for what, value in (("component name", component), ("component version", version)):
            if not _SAFE_NAME.fullmatch(value):
                raise ArtifactSpecError(
                    f"{what} {value!r}: expected letters, digits and . _ - + (it names a "
                    "folder under the artifact store)")
        # Pure checks but for a stat() per artifact in a local deployment's folder.
        planned = await anyio.to_thread.run_sync(self._plan, component, version,
                                                 list(artifacts), artifact_dir)
        async with self._turns:
            while self._collecting:
                await self._turns.wait()
            self._fetching += 1
        try:
            return await self._fetch(component, version, planned, progress)
        finally:
            with anyio.CancelScope(shield=True):
                async with self._turns:
                    self._fetching -= 1
                    self._turns.notify_all()

    async def _fetch(self, component: str, version: str, planned: list[_Planned],
                     progress: ProgressCallback | None) -> FetchedArtifacts:
        async with self._lock(f"component:{component}/{version}"):
            state = _state(planned)
            if await anyio.to_thread.run_sync(self._is_current, component, version, planned,
                                              state):
                stats = FetchStatistics(from_cache=len(planned))
                return self._result(component, version, planned, stats)
            job = _Fetch(component, version)
            staging = self.root / TMP / f"stage-{uuid.uuid4().hex}"
            try:
                await anyio.to_thread.run_sync(
                    lambda: (staging / "artifacts").mkdir(parents=True))
                for item in planned:
                    await self._install(job, item, staging, progress)
                await anyio.to_thread.run_sync(self._publish, component, version, planned,
                                               staging, state)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._undo, job, staging)
                raise
            c = job.counters
            stats = FetchStatistics(c.requests, c.bytes_downloaded, c.resumed, c.retries,
                                    c.from_cache)
            return self._result(component, version, planned, stats)

    def _plan(self, component: str, version: str, artifacts: Sequence[ArtifactSpec],
              artifact_dir: Path | None) -> list[_Planned]:
        """Check every artifact's description and the S3 rules, before any request."""
        planned: list[_Planned] = []
        names: dict[str, str] = {}
        for spec in artifacts:
            where = f"{spec.uri} of {component} {version}"
            if spec.uri.lower().startswith("docker:"):
                log.warning("artifact %s: a Docker image, not a file: this runtime does not "
                            "pull images (run `docker pull` on the device)", where)
                continue
            if spec.uri.startswith("s3://"):
                split_s3_uri(spec.uri)
            if spec.filename in names:
                raise ArtifactSpecError(
                    f"artifact {where}: its file name {spec.filename!r} is also the name of "
                    f"{names[spec.filename]}; two artifacts cannot share {{artifacts:path}}/"
                    f"{spec.filename}")
            names[spec.filename] = spec.uri
            digest = parse_digest(spec.digest, spec.algorithm, where) if spec.digest else None
            local = local_source(spec, component, version, artifact_dir)
            if local is None:
                bucket, _key = split_s3_uri(spec.uri)
                check_bucket_name(bucket, spec.uri)
            planned.append(_Planned(spec, digest, local))
        folder = local_folder(artifact_dir, component, version)
        if folder is not None:  # the rest of the folder, each file with its own mode
            for relative, path, mode in folder_files(folder):
                if relative in names:
                    continue  # a recipe artifact: its Permission and Unarchive apply
                permission = Permission(
                    Access.ALL if mode & 0o004 else Access.OWNER,
                    Access.ALL if mode & 0o001 else Access.OWNER if mode & 0o111 else Access.NONE)
                planned.append(_Planned(ArtifactSpec(path.as_uri(), permission=permission),
                                        None, path, relative))
        return planned

    def _is_current(self, component: str, version: str, planned: list[_Planned],
                    state: bytes) -> bool:
        """True when this exact list (every one pinned by a digest) is already installed."""
        if not planned or any(p.digest is None for p in planned):
            return False
        try:
            if self._state_path(component, version).read_bytes() != state:
                return False
        except OSError:
            return False
        folder = self.artifacts_path(component, version)
        unarchived = self.decompressed_path(component, version)
        return all((folder / p.target).exists() and (
            p.spec.unarchive is not Unarchive.ZIP or (unarchived / p.spec.archive_folder).is_dir())
            for p in planned)

    def _result(self, component: str, version: str, planned: list[_Planned],
                stats: FetchStatistics) -> FetchedArtifacts:
        path = self.artifacts_path(component, version)
        return FetchedArtifacts(component, version, path,
                                self.decompressed_path(component, version),
                                {p.spec.uri: path / p.target for p in planned}, stats)

    async def _install(self, job: _Fetch, item: _Planned, staging: Path,
                       progress: ProgressCallback | None) -> None:
        spec = item.spec
        mode = spec.permission.mode
        where = job.where(spec)
        stage = "fetched" if item.local is None else "copied"
        try:
            blob = await self._blob(job, item, mode, progress)
            stage = "installed"
            installed = staging / "artifacts" / item.target
            if item.path:  # a folder file, perhaps in a subfolder
                await anyio.Path(installed.parent).mkdir(parents=True, exist_ok=True)
            await anyio.to_thread.run_sync(_link_or_copy, blob, installed)
            if spec.unarchive is Unarchive.ZIP:
                stage = "unpacked"
                await anyio.to_thread.run_sync(
                    extract_zip, blob, staging / "unarchived" / spec.archive_folder, mode,
                    self.limits, where)
        except ArtifactDiskFull:
            raise
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ArtifactDiskFull(
                f"artifact {where}: the disk under {self.root} filled up while it was {stage} "
                f"({error.strerror}); nothing of this deployment's artifacts was kept: free "
                "some space (or remove unused components) and deploy again") from error

    async def _blob(self, job: _Fetch, item: _Planned, mode: int,
                    progress: ProgressCallback | None) -> Path:
        """The cache file holding this artifact's content with ``mode``; fetch it if needed."""
        spec, digest = item.spec, item.digest
        if digest is not None:
            async with self._lock(digest.key):
                blob = await anyio.to_thread.run_sync(self._cached, job, digest, mode)
                if blob is not None:
                    job.counters.from_cache += 1
                    if progress is not None:
                        size = (await anyio.Path(blob).stat()).st_size
                        meter = RateMeter(job.component, spec.uri, size, progress)
                        meter.rewind(size)
                        meter.finish()
                    return blob
                return await self._download(job, item, mode, progress)
        return await self._download(job, item, mode, progress)

    def _blob_path(self, digest: Digest, mode: int) -> Path:
        return self.root / CACHE / digest.algorithm / f"{digest.hex}-{mode:04o}"

    def _cached(self, job: _Fetch, digest: Digest, mode: int) -> Path | None:
        """The cache file for ``digest`` with ``mode``, made from another mode's if need be."""
        wanted = self._blob_path(digest, mode)
        if wanted.exists():
            return wanted
        others = sorted(wanted.parent.glob(f"{digest.hex}-*")) if wanted.parent.is_dir() else []
        if not others:
            return None
        temporary = self.root / TMP / f"{digest.hex}.{uuid.uuid4().hex}.part"
        temporary.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(others[0], temporary)
            temporary.chmod(mode)
            os.replace(temporary, wanted)
        finally:
            temporary.unlink(missing_ok=True)
        job.new_blobs.append(wanted)
        return wanted

    async def _download(self, job: _Fetch, item: _Planned, mode: int,
                        progress: ProgressCallback | None) -> Path:
        """Download or copy into ``artifact-tmp/``, check the digest, publish into the cache."""
        spec = item.spec
        where = job.where(spec)
        algorithm = item.digest.algorithm if item.digest else hash_name(spec.algorithm, where)
        part = self.root / TMP / f"{uuid.uuid4().hex}.part"
        await anyio.Path(part.parent).mkdir(parents=True, exist_ok=True)
        try:
            if item.local is not None:
                actual = await anyio.to_thread.run_sync(copy_hashing, item.local, part,
                                                        algorithm, where)
                size = (await anyio.Path(part).stat()).st_size
                meter = RateMeter(job.component, spec.uri, size, progress)
                meter.add(size)
                meter.finish()
            else:
                actual = await self._from_s3(job, spec, part, algorithm, progress)
            if item.digest is not None and actual.value != item.digest.value:
                raise DigestMismatch(
                    f"artifact {where}: digest mismatch: the recipe's Digest "
                    f"({spec.algorithm}) is {item.digest.recipe_form} but the fetched file "
                    f"hashes to {actual.recipe_form}; the object changed after the recipe was "
                    "made, or the Digest is wrong: fix one of them and deploy again")
            blob = self._blob_path(actual, mode)

            def publish() -> None:
                part.chmod(mode)
                blob.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part, blob)

            await anyio.to_thread.run_sync(publish)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.Path(part).unlink(missing_ok=True)
        job.new_blobs.append(blob)
        return blob

    async def _from_s3(self, job: _Fetch, spec: ArtifactSpec, part: Path, algorithm: str,
                       progress: ProgressCallback | None) -> Digest:
        bucket, key = split_s3_uri(spec.uri)
        s3 = await self._source()
        info = await s3.check(bucket, key, spec.uri, job.counters)
        target = await anyio.to_thread.run_sync(
            PartFile, part, algorithm, info.size, job.where(spec))
        try:
            meter = RateMeter(job.component, spec.uri, info.size, progress)
            await s3.download(bucket, key, spec.uri, info, target, meter, job.counters)
            digest = await anyio.to_thread.run_sync(target.finish)
            meter.finish()
            return digest
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(target.discard)
            raise

    def _publish(self, component: str, version: str, planned: list[_Planned], staging: Path,
                 state: bytes) -> None:
        """Swap the staged folders into place, then record the state (blocking).

        The old state goes first: a crash half-way leaves no state, so the next
        fetch rebuilds the folders (from the cache) instead of trusting them.
        """
        mode = 0o400
        for item in planned:
            mode |= item.spec.permission.mode
        state_path = self._state_path(component, version)
        state_path.unlink(missing_ok=True)
        # Folders become read-only once in place: moving a folder to another parent
        # rewrites its ".." entry, which needs write permission on it.
        destination = self.artifacts_path(component, version)
        _swap(staging / "artifacts", destination, staging)
        make_read_only(destination, mode)
        unarchived = self.decompressed_path(component, version)
        _swap(staging / "unarchived", unarchived, staging)
        if unarchived.exists():
            os.chmod(unarchived, folder_mode(mode))
        state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = staging / "state.json"
        temporary.write_bytes(state)
        os.replace(temporary, state_path)
        force_rmtree(staging)

    def _undo(self, job: _Fetch, staging: Path) -> None:
        """Remove what a failed fetch made: its staging folder and cache files nothing uses."""
        force_rmtree(staging)
        for blob in job.new_blobs:
            try:
                if blob.stat().st_nlink == 1:
                    blob.unlink()
            except FileNotFoundError:
                pass
        _remove_empty(self.root / TMP)

    async def gc(self, keep: AbstractSet[tuple[str, str]]) -> GcReport:
        """Remove every component version not in ``keep`` (``(name, version)`` pairs) and the
        cache files no installed artifact uses any more. Call it after a successful deployment.

        It waits for running fetches of this store to end, and they wait for it.
        """
        async with self._turns:
            while self._fetching or self._collecting:
                await self._turns.wait()
            self._collecting = True
        try:
            return await anyio.to_thread.run_sync(self._gc, set(keep))
        finally:
            with anyio.CancelScope(shield=True):
                async with self._turns:
                    self._collecting = False
                    self._turns.notify_all()

    def _gc(self, keep: set[tuple[str, str]]) -> GcReport:
        removed: set[tuple[str, str]] = set()
        for top in ("artifacts", "artifacts-unarchived", STATE):
            base = self.root / top
            for name_dir in _children(base):
                for entry in _children(name_dir):
                    version = entry.name.removesuffix(".json") if top == STATE else entry.name
                    if (name_dir.name, version) not in keep:
                        force_rmtree(entry)
                        removed.add((name_dir.name, version))
                _remove_empty(name_dir)
        files, freed = 0, 0
        for algorithm_dir in _children(self.root / CACHE):
            for blob in _children(algorithm_dir):
                status = blob.stat()
                if status.st_nlink == 1:
                    blob.unlink()
                    files += 1
                    freed += status.st_size
        for leftover in _children(self.root / TMP):
            force_rmtree(leftover)  # no fetch runs now: this is what a crash left behind
        return GcReport(tuple(sorted(removed)), files, freed)


def _state(planned: Iterable[_Planned]) -> bytes:
    def entry(p: _Planned) -> dict[str, Any]:
        spec = asdict(p.spec)
        spec["unarchive"] = p.spec.unarchive.value
        spec["permission"] = {"read": p.spec.permission.read.value,
                              "execute": p.spec.permission.execute.value}
        spec["path"] = p.target
        return spec

    return orjson.dumps([entry(p) for p in planned])


def _link_or_copy(blob: Path, target: Path) -> None:
    try:
        os.link(blob, target)
    except OSError:  # a file system without hard links: a copy costs space, not correctness
        shutil.copy2(blob, target)


def _swap(new: Path, destination: Path, staging: Path) -> None:
    """Put ``new`` at ``destination`` (or just clear it when ``new`` is absent)."""
    old = staging / f"old-{destination.name}-{uuid.uuid4().hex}"
    if os.path.lexists(destination):
        if destination.is_dir() and not destination.is_symlink():
            os.chmod(destination, 0o700)
        os.replace(destination, old)
    if new.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, destination)
    force_rmtree(old)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
