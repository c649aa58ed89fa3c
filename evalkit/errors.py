"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class UserError(Exception):
    """Bad input from the user: a file, key, model or option. Printed as one line."""

    exit_code = 2
