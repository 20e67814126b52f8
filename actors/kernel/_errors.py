"""The kernel's errors: one base class, each mixing in the builtin a caller would catch."""


class ActorsError(Exception):
    """Base class of every error edge-actors raises on purpose."""


class WouldBlock(ActorsError):
    """A non-blocking operation could not complete without waiting."""


class MailboxFull(WouldBlock):
    """``tell_nowait`` found the recipient's bounded mailbox full; use ``tell`` to wait."""


class ActorStopped(ActorsError, RuntimeError):
    """The recipient is stopped: the message went to the dead letters."""


class AskTimeout(ActorsError, TimeoutError):
    """No reply to an ``ask`` arrived within its timeout."""


class ChildSpecError(ActorsError, ValueError):
    """A supervisor's child specification is invalid (names the child and the field)."""


class ChildStartError(ActorsError, RuntimeError):
    """A child failed to start; ``__cause__`` holds the child's own exception."""


class MaxRestartIntensity(ActorsError, RuntimeError):
    """A supervisor restarted its children more often than its intensity allows and gave up."""


class SystemFailure(ActorsError, RuntimeError):
    """The root of the supervision tree failed; ``__cause__`` holds the reason."""


class NameTaken(ActorsError, ValueError):
    """An actor with that name is already registered in the system."""
