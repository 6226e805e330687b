"""Everything that decides who can take the Mask off, in one place to read.

- :mod:`.crypto`: the primitives, all from ``cryptography`` (AES-256-GCM, HKDF, ChaCha20, Argon2id);
- :mod:`.keys`: the content key in the aux, bare or wrapped by a passphrase or key file;
- :mod:`.payload`: the face regions compressed into a byte budget;
- :mod:`.carrier`, :mod:`.stego`: which pixels carry a sealed payload, and the keyed embedding;
- :mod:`.keyed`: the ``sealed`` and ``detached`` methods and their aux format.

Nothing here imports torch: taking a keyed Mask off needs numpy, Pillow and ``cryptography`` only.
"""
