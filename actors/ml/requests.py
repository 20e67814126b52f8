"""Requests an inference component answers: :class:`Infer`, the image bytes in, the result out.

Kept apart from the ML code so the runtime (the IPC operation, the CLI) can
name a request without loading numpy, Pillow or a model runtime.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Infer:
    """Run the component's model on one encoded image (JPEG, PNG...) now.

    The reply is the message the component would publish for it, in
    Greengrass's format (``inference-results`` and the rest), sent to the asker
    only. Send it with ``Nucleus.ask(component, Infer(data))``, over IPC with the
    ``Infer`` operation (``IpcClient.infer``), or ``edge-actors infer``.
    """

    image: bytes
    #: Shown as ``image-name`` in the reply when given.
    name: str = ""

    def __repr__(self) -> str:  # not the image's bytes in logs and dead letters
        return f"Infer(<{len(self.image)} bytes>, name={self.name!r})"
