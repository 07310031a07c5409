"""Hugging Face hub access that never waits on retries: the offline flags, one quick probe,
and hub datasets loaded from the local cache first.

Stdlib only at import (no torch, no huggingface_hub, no datasets), so model and data loaders share it.
"""
from __future__ import annotations

import glob
import os
import threading
import urllib.error
import urllib.request


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set to a true value (read now, not at import)."""
    return any(os.environ.get(v, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One HEAD request to the hub endpoint (HF_ENDPOINT), no retries; DNS included, the
    probe runs in a daemon thread so the whole check takes at most `timeout_s`."""
    url = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    ok: list[bool] = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s)
            ok.append(True)
        except urllib.error.HTTPError:  # the server answered: reachable
            ok.append(True)
        except Exception:  # DNS, refused, TLS, timeout
            pass
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s)
    return bool(ok)


class HubUnavailableError(ConnectionError):
    """A hub resource neither in the local cache nor reachable (one-line message)."""


def load_dataset_cached_first(repo_id: str, config: str, split: str, unavailable: str):
    """`datasets.load_dataset(repo_id, config, split=split)` that never waits on retries: the
    `datasets`-cache copy when there is one (loaded in offline mode, no network at all); else,
    offline (hub_offline) or unreachable (one quick probe), HubUnavailableError(unavailable) at once."""
    import datasets  # lazy: heavy, only the hub loaders need it
    cfg = datasets.config
    owner, name = repo_id.split("/")
    root = os.path.join(cfg.HF_DATASETS_CACHE, f"{owner}___{datasets.naming.camelcase_to_snakecase(name)}", config)
    cached = any(os.path.isdir(d) for d in glob.glob(os.path.join(glob.escape(root), "*", "*")))
    if not cached and (hub_offline() or not hub_reachable()):
        raise HubUnavailableError(unavailable)
    offline = cfg.HF_HUB_OFFLINE
    cfg.HF_HUB_OFFLINE = offline or cached  # a cached copy loads without touching the network
    try:
        return datasets.load_dataset(repo_id, config, split=split)
    finally:
        cfg.HF_HUB_OFFLINE = offline
