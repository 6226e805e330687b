"""Network definitions (pure nn.Modules, no I/O)."""
