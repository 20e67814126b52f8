"""Every error edge-actors raises on purpose derives from :class:`ActorsError`."""

from .kernel._errors import (
    ActorsError,
    ActorStopped,
    AskTimeout,
    ChildSpecError,
    ChildStartError,
    MailboxFull,
    MaxRestartIntensity,
    NameTaken,
    SystemFailure,
    WouldBlock,
)

__all__ = [
    "ActorStopped",
    "ActorsError",
    "AskTimeout",
    "ChildSpecError",
    "ChildStartError",
    "MailboxFull",
    "MaxRestartIntensity",
    "NameTaken",
    "SystemFailure",
    "WouldBlock",
]
