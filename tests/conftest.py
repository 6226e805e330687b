"""Shared fixtures. Real photos come from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# imnkit's rebuildable cache (the saved HOG detector) goes to a fresh folder, not the user's home,
# removed when the test run ends.
if "IMNKIT_CACHE" not in os.environ:
    os.environ["IMNKIT_CACHE"] = tempfile.mkdtemp(prefix="imnkit-test-cache-")
    atexit.register(shutil.rmtree, os.environ["IMNKIT_CACHE"], True)


def shared_dir() -> Path:
    env = os.environ.get("IMNKIT_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture
def one_thread():
    """Torch on one thread: two OpenMP threads on a shared 2-core box are far slower than one when the
    other core is busy (network and training tests use it)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"the shared data folder {path} is absent (set IMNKIT_SHARED)")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared: Path) -> Path:
    path = shared / "data" / "faces"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the real-photo tests need ../shared/data/faces")
    return path


@pytest.fixture(scope="session")
def reference_dir(shared: Path) -> Path:
    path = shared / "reference" / "checkpoints"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the fixture tests need ../shared/reference/checkpoints")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def photo(rng) -> np.ndarray:
    """A smooth synthetic 96x128 RGB image (not a face): gradients plus noise."""
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


class S3Server:
    """A real S3 API served on 127.0.0.1 by moto's server mode (no network, no cloud account)."""

    def __init__(self, endpoint: str, client):
        self.endpoint = endpoint  # host:port
        self.client = client  # a boto3 S3 client for the test's own checks

    def url(self, bucket: str, key: str = "") -> str:
        """An s3:// URL that reaches this server from any process: the endpoint and the keys ride in
        the URL (pyarrow's own syntax), because Ray's workers, started before the server, never see
        environment variables set afterwards. Users put credentials in the environment instead."""
        return f"s3://testing:testing@{bucket}/{key}?endpoint_override={self.endpoint}&scheme=http"

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free local port for the whole session (about 0.5 s to start)."""
    pytest.importorskip("pyarrow.fs", reason="pyarrow is not installed (pip install -e \".[test,ray]\")")
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e \".[test]\")")
    boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e \".[test]\")")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    yield S3Server(f"{host}:{port}", client)
    server.stop()
