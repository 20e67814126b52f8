"""The actor kernel: actors with bounded mailboxes, supervisors, the actor system.

Imports nothing else of edge-actors; every other room builds on it.
"""

from ._actor import Actor, ActorRef, ActorStatistics, Later
from ._errors import (
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
from ._mailbox import Mailbox, MailboxStatistics
from ._supervisor import (
    Backoff,
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorStatistics,
    order_by_dependencies,
    start_child,
)
from ._system import ActorSystem, DeadLetter, DeadLetters, SystemStatistics, run

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystem",
    "ActorsError",
    "AskTimeout",
    "Backoff",
    "ChildSpec",
    "ChildSpecError",
    "ChildStartError",
    "DeadLetter",
    "DeadLetters",
    "Later",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "MaxRestartIntensity",
    "NameTaken",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorStatistics",
    "SystemFailure",
    "SystemStatistics",
    "WouldBlock",
    "order_by_dependencies",
    "run",
    "start_child",
]
