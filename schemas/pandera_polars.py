"""`import pandera.polars` without pandas.

pandera's top-level package imports pandas whenever it is installed, for its pandas API, even
when only the polars API is used: 0.7 s more on every `smartchat validate` (measured: 0.6 s to
import pandera.polars without pandas, 1.3 s with it), and most data teams have pandas. While
pandera loads, pandas is reported missing, which pandera handles as the polars-only install it
supports; pandas stays importable for everyone else afterwards. Where pandas is already imported
nothing changes (it costs nothing more then).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


class _PandasAbsent(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            # The exact sentence pandera recognises as "pandas is not installed".
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


@contextmanager
def pandas_hidden() -> Iterator[None]:
    """While the block runs, `import pandas` fails as if pandas weren't installed (unless it is
    imported already). pandera imports parts of its pandas API lazily, while a schema is built
    and run too, so the whole validation runs inside this."""
    if "pandas" in sys.modules:
        yield
        return
    finder = _PandasAbsent()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def import_pandera_polars() -> ModuleType:
    """The `pandera.polars` module, loaded without pandas if it isn't loaded yet."""
    with pandas_hidden():
        import pandera.polars
    return pandera.polars
