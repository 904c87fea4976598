"""Errors a user can cause. The command line prints their one-sentence message and exits with code 2."""

from search_space import ArchError


class UserError(Exception):
    """Bad input: the message says what was wrong and what to do."""


USER_ERRORS = (UserError, ArchError)
