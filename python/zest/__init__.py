"""Route huggingface_hub through the local zestd.

``enable()`` points this process's huggingface_hub at zestd's local Hugging Face endpoint
and sets ``HF_ENDPOINT`` for the processes it starts; where hf_xet has not been imported yet
it also sets ``HF_XET_CLIENT_UNIX_SOCKET_PATH`` to zestd's socket door, so hf_xet's CAS
traffic goes over a Unix socket instead of loopback TCP. It works whether huggingface_hub was
imported before or after, and reaches functions imported by name earlier (``from
huggingface_hub import hf_hub_download``): huggingface_hub sends every Hub request through
one HTTP client, built by the factory its documented ``set_client_factory`` hook sets, and
the client zest installs sends requests for the Hub to zestd instead. zestd forwards them
with the caller's own credentials and hands back the Hub's answers; only Xet bytes come
from its cache and peers, each chunk verified before it is handed over.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.request
import warnings
from typing import Any
from urllib.parse import urlsplit

__all__ = ["enable", "disable", "enabled", "pull", "status", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "http://127.0.0.1:4748"

_lock = threading.Lock()
_state: dict[str, Any] = {}
_warned = False


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("ZEST_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode("utf-8"))


def status(endpoint: str | None = None) -> dict:
    """What zestd's endpoint reports: its address, its upstream Hub, requests and bytes."""
    return _get_json(_endpoint(endpoint) + "/zest/status", timeout=5)


def pull(
    repo_id: str,
    revision: str | None = None,
    repo_type: str = "model",
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Has zestd pull a repo into its Hugging Face cache; returns the snapshot path."""

    def as_list(p: list[str] | str | None) -> list[str]:
        if p is None:
            return []
        return [p] if isinstance(p, str) else list(p)

    body = json.dumps(
        {
            "repo_id": repo_id,
            "revision": revision or "main",
            "repo_type": repo_type,
            "include": as_list(allow_patterns),
            "exclude": as_list(ignore_patterns),
        }
    ).encode("utf-8")
    req = urllib.request.Request(
        _endpoint(endpoint) + "/zest/pull",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    tok = token or os.environ.get("HF_TOKEN")
    if tok:
        req.add_header("Authorization", f"Bearer {tok}")
    try:
        with urllib.request.urlopen(req, timeout=None) as r:
            return json.loads(r.read().decode("utf-8"))["snapshot"]
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace").strip()
        raise RuntimeError(f"zestd could not pull {repo_id}: {detail or e}") from None


def enabled() -> bool:
    return bool(_state)


def _hub_origin() -> str:
    hub = sys.modules.get("huggingface_hub.constants")
    endpoint = getattr(hub, "ENDPOINT", None) or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return endpoint.rstrip("/")


def _rewriter(hub: str, ours: str):
    """A request hook: requests for the Hub go to zestd instead, same path and query."""
    h = urlsplit(hub)
    o = urlsplit(ours)

    def redirect(request) -> None:
        u = request.url
        if (u.scheme, u.host, u.port or _default_port(u.scheme)) != (
            h.scheme,
            h.hostname,
            h.port or _default_port(h.scheme),
        ):
            return
        if h.path and not u.path.startswith(h.path.rstrip("/") + "/"):
            return
        path = u.raw_path.decode("ascii")
        if h.path:
            path = path[len(h.path.rstrip("/")) :]
        request.url = type(u)(f"{o.scheme}://{o.netloc}{path}")
        request.headers["Host"] = o.netloc

    return redirect


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def enable(endpoint: str | None = None) -> bool:
    """Send huggingface_hub's requests in this process, and HF_ENDPOINT in child processes,
    through zestd. Returns False (after one warning) if no zestd answers there."""
    global _warned
    ours = _endpoint(endpoint)
    try:
        info = _get_json(ours + "/zest/status", timeout=2)
    except Exception as e:  # noqa: BLE001 - any failure means: leave huggingface_hub alone
        if not _warned:
            warnings.warn(f"zest: no zestd answers at {ours} ({e}); huggingface_hub is left as it was", stacklevel=2)
            _warned = True
        return False
    with _lock:
        if _state:
            _undo()
        hub = _hub_origin()
        _state["env"] = os.environ.get("HF_ENDPOINT")
        os.environ["HF_ENDPOINT"] = ours
        _state["hub"] = hub
        _state["ours"] = ours
        _install(hub, ours)
        # hf_xet's CAS traffic over zestd's Unix socket, where hf_xet will read the variable:
        # it does when it is first imported, so only while it has not been yet.
        sock = info.get("xet_socket")
        if sock and "hf_xet" not in sys.modules and os.access(sock, os.R_OK | os.W_OK):
            _state["socket_env"] = os.environ.get("HF_XET_CLIENT_UNIX_SOCKET_PATH")
            os.environ["HF_XET_CLIENT_UNIX_SOCKET_PATH"] = sock
    return True


def disable() -> None:
    """Undo ``enable()``."""
    with _lock:
        _undo()


def _undo() -> None:
    if not _state:
        return
    old = _state.get("env")
    if old is None:
        os.environ.pop("HF_ENDPOINT", None)
    else:
        os.environ["HF_ENDPOINT"] = old
    if "socket_env" in _state:
        old_sock = _state["socket_env"]
        if old_sock is None:
            os.environ.pop("HF_XET_CLIENT_UNIX_SOCKET_PATH", None)
        else:
            os.environ["HF_XET_CLIENT_UNIX_SOCKET_PATH"] = old_sock
    restore = _state.get("restore")
    if restore:
        restore()
    _state.clear()


def _install(hub: str, ours: str) -> None:
    """Installs the rewriting client factory once huggingface_hub is importable."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import _http
    except ImportError:
        return
    hook = _rewriter(hub, ours)

    async def ahook(request) -> None:
        hook(request)

    prev = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory
    prev_async = getattr(_http, "_GLOBAL_ASYNC_CLIENT_FACTORY", None) or _http.default_async_client_factory

    def with_hook(client, h):
        hooks = dict(client.event_hooks)
        hooks["request"] = list(hooks.get("request", [])) + [h]
        client.event_hooks = hooks
        return client

    def factory():
        return with_hook(prev(), hook)

    def async_factory():
        return with_hook(prev_async(), ahook)

    huggingface_hub.set_client_factory(factory)
    huggingface_hub.set_async_client_factory(async_factory)

    def restore() -> None:
        huggingface_hub.set_client_factory(prev)
        huggingface_hub.set_async_client_factory(prev_async)

    _state["restore"] = restore
