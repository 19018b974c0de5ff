"""The one error type a user can cause: it names the problem and the fix."""
from __future__ import annotations


class AtbenchError(Exception):
    """A user-facing error. The CLI prints it as one message and exits with code 2.

    Args:
        problem: what is wrong, naming the file, field or name involved.
        fix: what the user should do about it.
    """

    def __init__(self, problem: str, fix: str):
        super().__init__(problem, fix)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}"

    def __reduce__(self):
        """Pickle by attributes, so errors of every subclass cross process boundaries (the
        executor's workers) whatever their constructor's signature."""
        return _rebuild, (type(self), dict(self.__dict__))


def _rebuild(cls: type[AtbenchError], attributes: dict) -> AtbenchError:
    error = cls.__new__(cls)
    Exception.__init__(error, attributes["problem"], attributes["fix"])
    error.__dict__.update(attributes)
    return error
