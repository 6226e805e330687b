"""Built-in recipes (TOML), installed as package data so `imnkit run mask PHOTO` works anywhere."""
