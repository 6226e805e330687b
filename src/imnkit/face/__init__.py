"""Faces: detection, alignment, identity descriptors and the offline classical swap.

Pure library code on HxWx3 uint8 RGB numpy arrays; the only files it reads are model files
(dlib's, located inside the installed ``face_recognition_models`` package without importing it)
and the built-in replacement identity pool shipped in ``imnkit/data/identities``.

* :mod:`imnkit.face.detect`     -- ``detect_faces(image, ...) -> Detection`` (faces + skipped, with reasons)
* :mod:`imnkit.face.centerface` -- the shipped CenterFace detector (boxes + 5 points, OpenCV dnn)
* :mod:`imnkit.face.fallback`   -- Masks for faces the natural swap cannot take (warp5, obfuscate)
* :mod:`imnkit.face.occlusion`  -- occluders (glasses frames, masks, mics) kept in front of the Mask
* :mod:`imnkit.face.align`      -- ArcFace 5-point template, Umeyama similarity, affine helpers
* :mod:`imnkit.face.descriptors` -- ``face_descriptor``, ``descriptor_distance`` (dlib ResNet, < 0.6 = same person)
* :mod:`imnkit.face.identities` -- the replacement identity pool and seeded assignment
* :mod:`imnkit.face.records`    -- ``store_faces`` / ``load_faces``: faces in a bundle (align writes, swap reads)
* :mod:`imnkit.face.swap`       -- ``swap_faces(image, faces, ...) -> SwapResult`` (Mask image + changed region)
* :mod:`imnkit.face.warp`       -- Delaunay triangulation and piecewise-affine warping
* :mod:`imnkit.face.filters`    -- Gaussian blurs (plain, over a mask) shared by the swap and paste-back
* :mod:`imnkit.face.models`     -- dlib model file locator and cached loaders

Submodules are imported on use, so ``import imnkit.face`` stays cheap.
"""
