"""numba's on-disk cache, keyed on every kernel source file rather than the one that holds
the function (PITFALLS N2).

numba stamps a cached function with a hash of its own source file only.  A kernel in
``envs.py`` that inlined ``policy._forward_row`` was therefore loaded, stale, after
``policy.py`` changed: the compiled CartPole rollout and the Python-called kernels then
differed by an ulp in ``log pi`` (seen while developing 0.3.0).  Installs from a wheel
replace every file at once, but an editable install or a hand-patched kernel would hit it.

Here the stamp of every function in this folder is one hash of all its ``*.py`` files, so a
change to any kernel recompiles them all.  This uses numba's locator classes
(``numba.core.caching.CacheImpl._locator_classes``), not a public API: where they are
missing, numba's own per-file stamp applies and nothing else changes.  Import this module
before any ``@njit(cache=...)``.
"""

import hashlib
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def sources_hash() -> str:
    """Return the sha256 of this folder's ``*.py`` files (names and contents, sorted)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


STAMP = ("nigt_hpc.kernels", sources_hash())


def _ours(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == _HERE


def _install() -> bool:
    try:
        from numba.core import caching
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator)
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        impl._locator_classes  # noqa: B018  (CacheImpl in numba 0.68, _CacheImpl before)
    except (ImportError, AttributeError):
        return False
    mine = []
    for base in bases:
        def get_source_stamp(self):
            return STAMP

        def from_function(cls, py_func, py_file, _base=base):
            if not _ours(py_file):
                return None  # not a kernel: numba's own locators decide
            return _base.from_function.__func__(cls, py_func, py_file)

        mine.append(type("Kernels" + base.__name__, (base,), {
            "get_source_stamp": get_source_stamp,
            "from_function": classmethod(from_function),
        }))
    if not any(getattr(c, "__name__", "").startswith("Kernels") for c in impl._locator_classes):
        impl._locator_classes = mine + list(impl._locator_classes)
    return True


INSTALLED = _install()


def is_cached(dispatcher) -> bool | None:
    """Return whether the on-disk cache holds ``dispatcher`` compiled for this machine and
    these sources (None where that cannot be read: not cached, or numba's internals moved).

    The test is numba's own: an index entry whose key (signature, CPU and LLVM "magic
    tuple", bytecode hash) is the one this process would look up, under the current stamp.
    """
    try:
        cache = dispatcher._cache
        if not cache._enabled:
            return None
        index = cache._cache_file._load_index()  # {} when absent or stamped otherwise
        codegen = dispatcher.targetctx.codegen()
        return any(key == cache._index_key(key[0], codegen) for key in index)
    except Exception:  # noqa: BLE001 - a private API: any change means "cannot tell"
        return None


def cache_dir(dispatcher) -> str | None:
    """Return the folder numba keeps ``dispatcher``'s cache files in (None: unknown)."""
    try:
        return dispatcher._cache._cache_path
    except AttributeError:
        return None
