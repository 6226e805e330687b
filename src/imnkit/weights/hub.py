"""Fetching weights from the Hugging Face Hub: pinned revision, standard cache, offline-aware."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WeightsError


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or IMNKIT_OFFLINE) asks for no network; read at call time."""
    for var in ("HF_HUB_OFFLINE", "IMNKIT_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def manual_fetch_hint(spec) -> str:
    return (
        f"fetch it by hand on a machine with network: "
        f"`hf download {spec.repo_id} {spec.filename} --repo-type {spec.repo_type} --revision {spec.revision or 'main'}` "
        f"(or download {spec.hub_url()}) and copy the Hugging Face cache here, "
        f"or give the file's path to the stage (swap: --set swap.generator=PATH / swap.arcface=PATH; "
        f"enhance: --set enhance.weights=PATH)"
    )


def fetch_hub_file(spec, *, download: bool = True) -> Path:
    """Path of the Hub file in the standard HF cache, downloading it unless offline or ``download`` is false."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline() or not download
    where = f"{spec.filename} from {spec.repo_id}@{(spec.revision or 'main, unpinned')[:15]}"
    try:
        path = hf_hub_download(
            repo_id=spec.repo_id,
            filename=spec.filename,
            repo_type=spec.repo_type,
            revision=spec.revision,
            local_files_only=offline,
            library_name="imnkit",
        )
    except LocalEntryNotFoundError:
        why = "is not in the local Hugging Face cache" + (" and the Hub is offline (HF_HUB_OFFLINE)" if hub_offline() else "")
        if download and not hub_offline():
            why = "could not be downloaded (no network?)"
        raise WeightsError(f"weights '{spec.name}': {where} {why}", hint=manual_fetch_hint(spec)) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise WeightsError(
            f"weights '{spec.name}': {where} is not on the Hub ({type(err).__name__})",
            hint=manual_fetch_hint(spec),
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise WeightsError(
            f"weights '{spec.name}': downloading {where} failed ({type(err).__name__})",
            hint=manual_fetch_hint(spec),
        ) from None
    return Path(path)
