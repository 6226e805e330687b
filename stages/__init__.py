"""Built-in stages of imnkit (installed as ``imnkit.stages``).

Importing this package registers every built-in stage. Each module holds one stage and starts with
its contract: the bundle keys it requires and provides, with shape, dtype and range.
"""

from importlib import import_module

_BUILTIN = ("dwt", "metrics", "align", "swap", "enhance", "embed", "extract", "preview")

for _name in _BUILTIN:
    import_module(f"{__name__}.{_name}")
