"""The one exception type the data loaders raise for bad files and folders."""


class DatasetError(ValueError):
    """A data file or folder is missing, malformed or does not hold what was expected.

    The message names the file and what was expected, in one line, so that the
    command-line interface can print it as-is.
    """
