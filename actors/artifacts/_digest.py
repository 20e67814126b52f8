"""Recipe digests: the ``Algorithm`` names Greengrass accepts and the base64 ``Digest`` form."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ._errors import ArtifactSpecError

# Greengrass hands ``Algorithm`` to Java's MessageDigest; these are the names it
# accepts that a recipe can carry, mapped to hashlib's.
_ALGORITHMS = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512", "SHA-1": "sha1",
               "MD5": "md5"}


@dataclass(frozen=True, slots=True)
class Digest:
    """A hash value: ``algorithm`` is hashlib's name, ``value`` the raw bytes."""

    algorithm: str
    value: bytes

    @property
    def hex(self) -> str:
        return self.value.hex()

    @property
    def recipe_form(self) -> str:
        """How a recipe writes it: base64 of the raw bytes."""
        return base64.b64encode(self.value).decode()

    @property
    def key(self) -> str:
        """The content address: ``sha256/<hex>``."""
        return f"{self.algorithm}/{self.hex}"


def hash_name(algorithm: str, uri: str) -> str:
    """hashlib's name for a recipe ``Algorithm`` (any case); else :class:`ArtifactSpecError`."""
    name = _ALGORITHMS.get(algorithm.strip().upper())
    if name is None:
        raise ArtifactSpecError(
            f"artifact {uri}: Algorithm {algorithm!r} is not supported; use one of "
            f"{', '.join(_ALGORITHMS)} (SHA-256 is the default)")
    return name


def parse_digest(digest: str, algorithm: str, uri: str) -> Digest:
    """Decode a recipe ``Digest`` (base64, as Greengrass writes it) for ``algorithm``."""
    name = hash_name(algorithm, uri)
    size = hashlib.new(name).digest_size
    try:
        value = base64.b64decode(digest.strip(), validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != size:
        raise ArtifactSpecError(
            f"artifact {uri}: Digest {digest!r} is not the base64 of a {algorithm} hash "
            f"({size} bytes); compute it as base64(sha256(file)), e.g. "
            "`openssl dgst -sha256 -binary FILE | base64`")
    return Digest(name, value)


def hash_file(path: Path, algorithm: str, chunk: int = 1 << 20) -> Digest:
    """Hash a file (blocking: call it from a worker thread)."""
    hasher = hashlib.new(algorithm)
    with path.open("rb") as file:
        while block := file.read(chunk):
            hasher.update(block)
    return Digest(algorithm, hasher.digest())
