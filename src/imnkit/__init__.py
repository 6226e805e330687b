"""imnkit: reversible face privacy with the Invertible "Mask" Network.

The library API lives in submodules (``imnkit.bundle``, ``imnkit.recipe``, ``imnkit.imageio``,
``imnkit.metrics``, ``imnkit.dwt`` ...); the ``imnkit`` command is a thin layer over them.
"""

__version__ = "0.1.0"
