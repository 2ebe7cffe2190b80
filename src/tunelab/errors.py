"""Errors the user caused. The CLI turns a UserError into one line on stderr and exit code 2."""


class UserError(Exception):
    """Bad input (unknown name, malformed file, invalid option). The message names the file/line/option."""


class RunFailed(Exception):
    """A run that started but could not finish (diverged, could not write its output). The CLI prints
    one line and exits 1; run.json (if it could be written) says "failed" with the reason."""


class OutputError(RunFailed):
    """Writing the run's output failed (disk full, permission): the message names the path."""


def output_error(path: str, e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {e.strerror or e} (nothing was marked completed; the previous "
                       "run.json, if any, is intact)")
