"""Small helpers every part of mrm_hf uses the same way: logging set-up and checking a named choice."""

import logging
import sys
from collections.abc import Iterable


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stdout at `level` for mrm_hf, `datasets` and `transformers` (run scripts pass each process's level:
    the main process talks, replicas only warn)."""
    import datasets
    import transformers

    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO, stream=sys.stdout)
    for library in (datasets.utils.logging, transformers.utils.logging):
        library.set_verbosity(level)
    logging.getLogger("mrm_hf").setLevel(level)


def check_choice(name: str, value, choices: Iterable, where: str | None = None):
    """`value` if it is one of `choices`, else a ValueError that says what was expected, what was found and where."""
    choices = tuple(choices)
    if value not in choices:
        place = f" ({where})" if where else ""
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}; found {value!r}{place}.")
    return value


__all__ = ["LOG_FORMAT", "check_choice", "setup_logging"]
