"""Engines that run a recipe over many inputs beyond the local loop of ``imnkit run`` (``--engine``)."""
