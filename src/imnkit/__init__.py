"""imnkit: reversible face privacy — put a Mask over the faces in a photo and seal the originals inside.

The promised Python API is :func:`imnkit.mask` and :func:`imnkit.unmask` (with :class:`MaskResult`),
documented with examples in docs/api.md. Everything else (``imnkit.bundle``, ``imnkit.recipe``,
``imnkit.protect.keyed`` ...) stays importable but is not promised: it may change between versions.
"""

__version__ = "0.1.0"
__all__ = ["MaskResult", "__version__", "mask", "unmask"]


def __getattr__(name: str):
    # Lazy, so that `import imnkit` (the CLI reads __version__) does not load torch and the models' code.
    if name in ("mask", "unmask", "MaskResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'imnkit' has no attribute {name!r}")
