"""Hugging Face Hub ids: fail fast, with a hint, when the hub cannot be reached.

Without this, an unreachable hub costs about a minute of retries inside ``transformers`` /
``datasets`` before an error that does not say what to do. :func:`check_hub` asks the hub about
the repository once, with a short timeout and no retries; ``HF_HUB_OFFLINE=1`` skips it (the
local cache is used as is).
"""

from __future__ import annotations

import os
import re

from patentcpc.errors import DataError, ModelError, PatentCPCError

HUB_TIMEOUT_S = 3.0  # per request; PATENTCPC_HUB_TIMEOUT overrides
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(name: str | os.PathLike) -> bool:
    """``owner/name`` that is not a local path (nor under a local folder ``owner``: ``models/nope``
    beside a ``models/`` folder is a missing local folder, not a hub id)."""
    s = str(name)
    return (bool(_HUB_ID.match(s)) and not os.path.exists(s) and not s.startswith(".")
            and not os.path.isdir(s.split("/")[0]))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub(repo_id: str, repo_type: str = "model") -> None:
    """Raise :class:`ModelError` (models) or :class:`DataError` (datasets) within a few seconds
    when ``repo_id`` cannot be fetched from the hub; return when it can, or when offline."""
    if offline():
        return
    error: type[PatentCPCError] = DataError if repo_type == "dataset" else ModelError
    timeout = float(os.environ.get("PATENTCPC_HUB_TIMEOUT", HUB_TIMEOUT_S))
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
    except ImportError:  # no hub client: the loaders will say so
        return
    hint = "use a local folder, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache"
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=timeout)
    except RepositoryNotFoundError:
        _raise(error, repo_id, f"no such {repo_type} on the Hugging Face Hub (or it is private); "
                               f"check the id, or use a local folder")
    except HfHubHTTPError as exc:  # gated, rate-limited, server error: the loader may still manage
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status < 500 and status not in (401, 403, 429):
            _raise(error, repo_id, f"the Hugging Face Hub refused it (HTTP {status}); {hint}")
    except Exception as exc:  # noqa: BLE001  (connection errors of requests/httpx, timeouts, DNS)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _raise(error, repo_id, f"the Hugging Face Hub cannot be reached ({reason[:120]}); {hint}")


def _raise(error: type[PatentCPCError], repo_id: str, problem: str) -> None:
    if error is DataError:
        raise DataError(repo_id, f"no such local file or folder; as a hub dataset id: {problem}")
    raise error(f"{repo_id}: no such local folder; as a Hugging Face Hub id: {problem}")
