"""The runtime's own IPC identities: the CLI's, and the names no component may take.

The CLI's token is written to ``<root>/cli.token`` (mode 0600), so whoever can
read the runtime's root folder may drive it, as with Greengrass's CLI
authorization groups. A component named like one of these identities would
take over its token and powers: such names are reserved.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import atomic_write
from ._errors import UnauthorizedError
from ._service import CallContext, IpcService

CLI_IDENTITY = "aws.greengrass.Cli"
#: Names of the runtime's own identities: no deployed component may have them.
RESERVED_NAMES = frozenset({CLI_IDENTITY, "$nucleus"})


def write_cli_token(service: IpcService, path: Path) -> None:
    """A fresh CLI token for this runtime, readable by the root folder's owner only."""
    token = service.register_component(CLI_IDENTITY)
    atomic_write(path, token.encode())
    os.chmod(path, 0o600)


def only_cli(context: CallContext, operation: str) -> None:
    """Refuse ``operation`` to anyone but the edge-actors CLI, or a component whose
    aws.greengrass.Cli policy allows it (checked by the IPC dispatch, which then
    marks the call authorized)."""
    if context.component != CLI_IDENTITY and not context.authorized:
        raise UnauthorizedError(f"{context.component} is not authorized to call {operation}: "
                                "only the edge-actors CLI may")
