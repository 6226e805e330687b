"""Keyed protection (sealed, detached): recovery, keys, passphrases, and refusal of every change.

Synthetic images keep these fast; tests/test_attack.py runs the network-inverse attack on real photos.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from imnkit.protect import crypto, keyed, stego
from imnkit.api import extract_file
from imnkit.errors import ImnkitError, IntegrityError, UsageError
from imnkit.imageio import load_image, save_png
from imnkit.protect.keys import KeySource, read_key_file, write_key_file

BOX = (16, 24, 64, 88)  # y0, x0, y1, x1 of the "face"


@pytest.fixture
def pair(rng):
    """(protected, Mask): a textured 96x128 photo whose face box differs in the Mask."""
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2, x + y], -1).astype(np.float64) + rng.normal(0, 6, (96, 128, 3))
    protected = np.clip(base, 0, 255).astype(np.uint8)
    mask = protected.copy()
    y0, x0, y1, x1 = BOX
    mask[y0:y1, x0:x1] = np.clip(255 - base[y0:y1, x0:x1] + rng.normal(0, 6, (y1 - y0, x1 - x0, 3)), 0, 255)
    return protected, mask


def outside(image, box=BOX):
    keep = np.ones(image.shape[:2], bool)
    keep[box[0] : box[2], box[1] : box[3]] = False
    return image[keep]


def psnr(a, b):
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


# -- crypto ---------------------------------------------------------------------------------------
def test_every_flipped_bit_of_ciphertext_nonce_or_header_is_refused():
    key, ad = crypto.new_key(), b'{"method":"sealed","size":[96,128]}'
    nonce, ct = crypto.seal(key, b"face pixels, compressed" * 2, ad)
    assert crypto.open_sealed(key, nonce, ct, ad) == b"face pixels, compressed" * 2
    for name, blob in (("ciphertext", ct), ("nonce", nonce), ("header", ad)):
        for bit in range(8 * len(blob)):
            flipped = bytearray(blob)
            flipped[bit // 8] ^= 1 << (bit % 8)
            args = {"ciphertext": ct, "nonce": nonce, "header": ad, name: bytes(flipped)}
            with pytest.raises(crypto.AuthenticationError):
                crypto.open_sealed(key, args["nonce"], args["ciphertext"], args["header"])


def test_hundred_random_wrong_keys_are_refused():
    key = crypto.new_key()
    nonce, ct = crypto.seal(key, b"x" * 100, b"ad")
    for _ in range(100):
        with pytest.raises(crypto.AuthenticationError) as err:
            crypto.open_sealed(crypto.new_key(), nonce, ct, b"ad")
        assert str(err.value) == crypto.AUTH_FAILED and err.value.exit_code == 4


def test_subkeys_and_keystream_depend_on_key_and_label():
    key = crypto.new_key()
    assert crypto.subkey(key, "a") != crypto.subkey(key, "b") != key
    assert crypto.keystream(key, 64) == crypto.keystream(key, 64)
    assert crypto.keystream(key, 64) != crypto.keystream(crypto.new_key(), 64)
    assert crypto.new_key() != crypto.new_key() and len(crypto.new_key()) == 32


# -- stego ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("nbytes", [1, 37, 400, 1500, 1750])
def test_stego_round_trip_and_change_budget(rng, nbytes):
    carrier = rng.integers(0, 256, 3 * 3000, dtype=np.uint8)
    carrier[:300] = 255  # saturated samples must still take any residue
    carrier[300:600] = 0
    order = stego.sample_order(rng.bytes(8 * 3000), 3000)
    data = rng.bytes(nbytes)
    out, layout = stego.embed(carrier, order, data)
    assert stego.extract(out, order, layout, nbytes) == data
    changed = out.astype(int) - carrier
    assert set(np.unique(np.abs(changed))) <= {0, 1, 2}
    inner = (carrier > 0) & (carrier < 255)
    assert np.all(np.abs(changed[inner]) <= 1)  # +-2 only where +-1 would leave 0..255
    # at most one change per group, so never more changes than groups used
    assert np.count_nonzero(changed) <= layout.dense + layout.sparse


def test_smaller_payloads_change_fewer_samples(rng):
    carrier = rng.integers(0, 256, 3 * 20000, dtype=np.uint8)
    order = stego.sample_order(rng.bytes(8 * 20000), 20000)
    counts = [np.count_nonzero(stego.embed(carrier, order, rng.bytes(n))[0] != carrier) for n in (500, 3000, 9000)]
    assert counts[0] < counts[1] < counts[2]
    # ternary Hamming efficiency: 1 trit per sample changes ~2/3 of the samples, less here
    assert counts[2] < 0.5 * len(carrier)


def test_order_is_a_keyed_permutation(rng):
    a = stego.sample_order(crypto.keystream(crypto.new_key(), 8 * 500), 500)
    b = stego.sample_order(crypto.keystream(crypto.new_key(), 8 * 500), 500)
    assert sorted(a.tolist()) == list(range(1500)) and not np.array_equal(a, b)


def test_payload_too_big_is_a_usage_error():
    with pytest.raises(UsageError):
        stego.plan(100, 101)


# -- hide / recover -------------------------------------------------------------------------------
def test_sealed_round_trip_is_exact_outside_and_close_inside(pair):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="sealed", codec="avif")  # embedded whatever it costs
    assert np.array_equal(outside(result.masked), outside(mask))
    assert result.aux.meta["aux.header"]["payloads"][0]["carry"] == "stego"
    assert psnr(result.masked[16:64, 24:88], mask[16:64, 24:88]) > 51.5  # the 52 dB target, inside the box
    recovered, notes = keyed.recover(result.masked, result.aux)
    assert np.array_equal(outside(recovered), outside(protected))
    assert psnr(recovered, protected) > 35  # noisy synthetic texture; real faces: benchmarks/roundtrip.py
    assert result.report["codec"] in ("avif", "webp-lossless") and result.report["bpp"] <= 4.8


def test_a_face_that_would_come_back_under_the_floor_travels_lossless_in_the_aux(pair):
    # the synthetic noise compresses badly: embedded, it would come back far under 46 dB Y
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="sealed")
    entry = result.aux.meta["aux.header"]["payloads"][0]
    assert entry["carry"] == "aux" and entry["codec"] == "webp-lossless"
    assert np.array_equal(result.masked, mask)  # nothing embedded: the masked photo is the Mask photo there
    assert np.array_equal(keyed.recover(result.masked, result.aux)[0], protected)


def test_sealed_lossless_when_it_fits_is_bit_exact(pair):
    protected, mask = pair
    smooth = protected.copy()
    smooth[16:64, 24:88] = 120  # compresses to almost nothing
    result = keyed.hide(smooth, mask, [BOX], method="sealed", codec="lossless")
    recovered, _ = keyed.recover(result.masked, result.aux)
    assert np.array_equal(recovered, smooth) and result.report["codec"] == "webp-lossless"


def test_detached_is_exact_and_masked_is_the_mask(pair):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="detached")
    assert np.array_equal(result.masked, mask)
    recovered, _ = keyed.recover(result.masked, result.aux)
    assert np.array_equal(recovered, protected)


def test_detached_from_a_jpeg_q85_copy_gives_the_exact_face(pair):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="detached")
    buf = io.BytesIO()
    Image.fromarray(result.masked).save(buf, "JPEG", quality=85)
    copy = np.array(Image.open(buf).convert("RGB"))
    assert not np.array_equal(copy, result.masked)
    recovered, _ = keyed.recover(copy, result.aux)
    y0, x0, y1, x1 = BOX
    assert np.array_equal(recovered[y0:y1, x0:x1], protected[y0:y1, x0:x1])


def test_detached_from_a_resized_copy_restores_size_and_exact_face(pair):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="detached")
    small = np.array(Image.fromarray(result.masked).resize((64, 48)))
    recovered, notes = keyed.recover(small, result.aux)
    y0, x0, y1, x1 = BOX
    assert recovered.shape == protected.shape and any("resized" in n for n in notes)
    assert np.array_equal(recovered[y0:y1, x0:x1], protected[y0:y1, x0:x1])


def test_wrong_key_and_changed_carrier_are_refused(pair, rng):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="sealed", codec="avif")
    wrong = dict(result.aux.tensors, **{"aux.key": torch.from_numpy(np.frombuffer(crypto.new_key(), np.uint8).copy())})
    with pytest.raises(crypto.AuthenticationError):
        keyed.recover(result.masked, type(result.aux)(tensors=wrong, meta=result.aux.meta))
    edited = result.masked.copy()
    edited[20:60, 30:80] ^= 1  # flip the lowest bit over the face: the hidden bits change
    with pytest.raises(crypto.AuthenticationError):
        keyed.recover(edited, result.aux)


def test_passphrase_lock_and_unlock(pair):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="detached", source=KeySource(passphrase="correct horse battery"))
    assert "aux.key" not in result.aux.tensors and "aux.key_wrapped" in result.aux.tensors
    recovered, _ = keyed.recover(result.masked, result.aux, KeySource(passphrase="correct horse battery"))
    assert np.array_equal(recovered, protected)
    with pytest.raises(crypto.AuthenticationError):
        keyed.recover(result.masked, result.aux, KeySource(passphrase="wrong horse battery"))
    with pytest.raises(UsageError):  # no passphrase and nobody to ask
        keyed.recover(result.masked, result.aux, KeySource())
    assert "correct horse" not in repr(KeySource(passphrase="correct horse battery"))


def test_key_file_written_private_and_needed(pair, tmp_path):
    protected, mask = pair
    path = write_key_file(tmp_path / "org.key")
    assert (path.stat().st_mode & 0o777) == 0o600 and len(path.read_bytes()) == 32
    with pytest.raises(ImnkitError):
        write_key_file(path)  # never over an existing key
    result = keyed.hide(protected, mask, [BOX], method="sealed", source=KeySource(key_file=read_key_file(path)))
    recovered, _ = keyed.recover(result.masked, result.aux, KeySource(key_file=read_key_file(path)))
    assert np.array_equal(outside(recovered), outside(protected))
    with pytest.raises(crypto.AuthenticationError):
        keyed.recover(result.masked, result.aux, KeySource(key_file=os.urandom(32)))
    with pytest.raises(UsageError):
        keyed.recover(result.masked, result.aux, KeySource())


def test_every_flipped_bit_of_a_sealed_aux_file_is_refused(pair, tmp_path):
    protected, mask = pair
    result = keyed.hide(protected, mask, [BOX], method="sealed", codec="avif")
    masked_png, aux_path, out = tmp_path / "p.masked.png", tmp_path / "p.aux.safetensors", tmp_path / "r.png"
    save_png(masked_png, result.masked)
    result.aux.save(aux_path)
    good = aux_path.read_bytes()
    extract_file(masked_png, aux_path, out)
    assert np.array_equal(outside(load_image(out)), outside(protected))
    out.unlink()
    integrity = 0
    for bit in range(8 * len(good)):
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        aux_path.write_bytes(flipped)
        with pytest.raises(ImnkitError) as err:
            extract_file(masked_png, aux_path, out)
        integrity += isinstance(err.value, IntegrityError)
        assert not out.exists()
    # most flips leave a readable file: those are refused as a changed aux (exit 4), the rest as unreadable
    assert integrity > 0.3 * 8 * len(good)


def test_several_regions_each_under_its_own_face_key(pair):
    protected, mask = pair
    boxes = [(4, 4, 40, 60), (50, 70, 90, 120)]
    mask = protected.copy()
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = 255 - protected[y0:y1, x0:x1]
    detached = keyed.hide(protected, mask, boxes, method="detached")
    assert np.array_equal(keyed.recover(detached.masked, detached.aux)[0], protected)
    sealed = keyed.hide(protected, mask, boxes, method="sealed")
    recovered, _ = keyed.recover(sealed.masked, sealed.aux)
    for y0, x0, y1, x1 in boxes:
        assert psnr(recovered[y0:y1, x0:x1], protected[y0:y1, x0:x1]) > 30
    assert psnr(sealed.masked, mask) > 52  # the regions' 52 dB target, and exact elsewhere


def test_sample_order_is_the_stable_argsorts_also_with_ties():
    # The order is part of the sealed format: the fast sort must give exactly the stable sort's
    # permutation, including when keys tie (then it falls back to the stable sort).
    rng = np.random.default_rng(7)
    for stream in (rng.bytes(8 * 5000), np.repeat(np.frombuffer(rng.bytes(8 * 50), np.uint64), 100).tobytes()):
        keys = np.frombuffer(stream, dtype=np.uint64)
        expected = (np.argsort(keys, kind="stable")[:, None] * 3 + np.arange(3)).reshape(-1)
        assert np.array_equal(stego.sample_order(stream, len(keys)), expected)


def test_passphrase_kdf_costs_what_the_security_model_says():
    # docs/security.md: Argon2id, 128 MiB, 10 iterations, 4 lanes, a random 128-bit salt per aux
    # (0.64-0.88 s per guess on the 2-core machine; benchmarks/keyed_speed.py measures it).
    a, b = crypto.KdfParams.fresh(), crypto.KdfParams.fresh()
    assert (a.memory_kib, a.iterations, a.lanes) == (131072, 10, 4)
    assert len(a.salt) == 16 and a.salt != b.salt
    assert crypto.KdfParams.from_dict(a.to_dict()) == a  # stored in the aux, so older auxes still open
