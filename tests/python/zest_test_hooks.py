"""Test environment only: removes a race in huggingface_hub 2.4 that makes its caches
nondeterministic, so the tests can compare caches file by file against it.

`snapshot_download` publishes Xet files to the shared blob store (`blobs/<2>/<xet hash>`)
from several threads. The first publishes all call `_ensure_shared_blobs_dir`, which
deletes "abandoned" marker temporaries; one thread deletes another's temporary marker
before that thread renames it, so that thread's file stays a plain repo blob instead of
a link into the store. Which file loses depends on timing (8 threads started together
lose one in most runs), so two clean downloads of one repo can differ. Serialising
that one function within a process gives the layout huggingface_hub means to write.
Nothing else in huggingface_hub or hf_xet is touched.

Loaded at interpreter start by `zest_test_hooks.pth`, which `scripts/test.sh` installs
into the test virtualenv; it patches the module only once something imports it.
"""

import importlib.abc
import importlib.util
import sys
import threading

_TARGET = "huggingface_hub.utils._shared_blobs"


def _serialise(module):
    original = module._ensure_shared_blobs_dir
    lock = threading.Lock()

    def _ensure_shared_blobs_dir(cache_dir):
        with lock:
            return original(cache_dir)

    module._ensure_shared_blobs_dir = _ensure_shared_blobs_dir


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _serialise(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install():
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
