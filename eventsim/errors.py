"""User-facing errors.

Every error a user can cause derives from :class:`EventsimError`. The CLI prints
``str(error)`` as one line and exits with status 2; it never shows a traceback
for these.
"""

from __future__ import annotations


class EventsimError(Exception):
    """Base class for errors caused by input or environment, not by a bug."""


class ConfigError(EventsimError):
    """A problem in a YAML file, located by file, line and field.

    ``str()`` gives ``FILE:LINE: FIELD: MESSAGE (hint: HINT)``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return " ".join(text.split())


class BackendError(EventsimError):
    """The requested array backend or dtype cannot be used here."""


class DatasetError(EventsimError):
    """A dataset is missing, corrupt or asked for in a way it cannot serve.

    ``param`` names the factory parameter at fault, if one is (a scenario then
    reports the error at ``dataset.params.<param>``).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class DivergenceError(EventsimError):
    """A state variable became NaN or infinite."""


class CheckpointError(EventsimError):
    """A run directory cannot be resumed (no checkpoint, a finished run, a changed config)."""


class Interrupted(EventsimError):
    """The run was stopped (Ctrl-C or SIGTERM) after saving a checkpoint; the CLI exits with 130."""
