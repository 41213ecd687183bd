"""Where the service uses private parts of libraries: one module per library, nowhere else.

Each module names the version it was written and tested against (`TESTED`) and decides at import,
with `private_way(library, TESTED)`, whether to take its private way (`PRIVATE`). On any other
installed version, or when the environment variable AIGEN_COMPAT_PUBLIC names the library (or says
`all`), it takes the library's public way instead and logs one WARNING saying so. tests/compat/ runs
every private way beside its public way and asserts the same behaviour. docs/compat.md lists what
each private way buys, measured.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)

# Read here, not in appfactory.config: it is decided when the libraries' wrappers are defined, at import.
PUBLIC_ENV = "AIGEN_COMPAT_PUBLIC"


def forced_public(library: str) -> bool:
    """Whether AIGEN_COMPAT_PUBLIC (`all`, or a comma-separated list of libraries) names `library`."""
    names = {name.strip().lower() for name in os.environ.get(PUBLIC_ENV, "").split(",")}
    return "all" in names or library.lower() in names


def private_way(library: str, tested: str) -> bool:
    """True when the installed `library` is the `tested` version; else one WARNING, and False."""
    try:
        installed = version(library)
    except PackageNotFoundError:
        installed = None
    if forced_public(library):
        log.warning("%s: using the public way (%s=%s)", library, PUBLIC_ENV, os.environ.get(PUBLIC_ENV))
        return False
    if installed != tested:
        log.warning(
            "%s %s is installed, its private way was tested against %s: using the library's public way",
            library,
            installed,
            tested,
        )
        return False
    return True
