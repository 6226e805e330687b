"""`imnkit train` (registered once the training library is in place)."""
