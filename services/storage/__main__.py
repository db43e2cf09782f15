"""Process entry point: `python -m services.storage`."""

import ctypes
import ctypes.util
import sys
from importlib.abc import MetaPathFinder

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per
    core), and freed memory stays in the arena: the upload's threads (gRPC,
    S3 parts, CSV profile) kept 20-40 MB more at the peak than the bytes in
    flight. Two arenas, set before any thread starts (as MALLOC_ARENA_MAX=2
    would), bound that; elsewhere than glibc this does nothing."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "mallopt"):
            libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


_limit_malloc_arenas()


class _NoPandas(MetaPathFinder):
    """pyarrow imports pandas (about 35 MB) the first time it converts an array,
    only to check for pandas types; the storage process has no pandas objects.
    Refusing the import makes pyarrow skip those checks (its documented
    behaviour without pandas) and keeps the memory out of this process."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("the storage process does not load pandas", name=name)


sys.meta_path.insert(0, _NoPandas())

from automl.common.server import run  # noqa: E402
from services.storage.server import build  # noqa: E402

run(build)
