"""Process entry point: `python -m services.storage`."""

import sys
from importlib.abc import MetaPathFinder


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
