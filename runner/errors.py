"""The one exception type for mistakes a user can fix (bad config, file, flag).

The CLI catches it once and prints `error: <file>: <problem>` on one line with exit code 2;
everything else is a bug and keeps its traceback.

May import: (nothing)
"""
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
