"""The one exception type the CLI turns into a clear message and exit code."""


class CarepathError(Exception):
    """An error the user can act on: says what was wrong, where, and what to do.

    The CLI prints it without a traceback and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  hint: {self.hint}" if self.hint else text
