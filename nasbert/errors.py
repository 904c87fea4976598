"""Errors a user can cause. The command line prints their one-sentence message and exits with code 2."""

from search_space import ArchError


class UserError(Exception):
    """Bad input: the message says what was wrong and what to do."""


USER_ERRORS = (UserError, ArchError)


def require_positive(options: object, *names: str) -> None:
    """Each named option of `options` (parsed args or a command's config) that is set must be positive; the
    first one that is not ends the command with one sentence naming its flag."""
    for name in names:
        value = getattr(options, name, None)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
