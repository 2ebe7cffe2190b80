"""Errors the user caused. The CLI turns a UserError into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input (unknown name, malformed file, invalid option). The message names the file/line/option."""
