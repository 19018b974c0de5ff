"""The one error type a user can cause: it names the problem and the fix."""


class AtbenchError(Exception):
    """A user-facing error. The CLI prints it as one message and exits with code 2.

    Args:
        problem: what is wrong, naming the file, field or name involved.
        fix: what the user should do about it.
    """

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix
