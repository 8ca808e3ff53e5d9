"""The one exception type for mistakes a user can fix (bad config, file, flag).

The CLI catches it once and prints `error: <file>: <problem>` on one line with exit code 2;
everything else is a bug and keeps its traceback.

May import: (nothing)
"""
import contextlib
import difflib


class UserError(Exception):
    """A user-fixable problem, described in one line that names the file at fault."""

    def __init__(self, where, problem):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}" if self.where else problem)

    def __reduce__(self):
        # rebuilt from its two parts when it crosses processes (`runner predict --jobs`)
        return UserError, (self.where, self.problem)


def did_you_mean(word, candidates):
    """' (did you mean 'x'?)' for the closest candidate, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


@contextlib.contextmanager
def stored_in(container, names):
    """Errors about texts that `container` stores (a snapshot's solver and net files, named
    `names` there) name `container`: a file on disk under a recorded name may be another,
    healthy file."""
    try:
        yield
    except UserError as error:
        if error.where in {str(name) for name in names}:
            raise UserError(container, f"its stored {error.where}: {error.problem}") from None
        raise
