"""Loaded models kept within a memory budget, evicting the least recently used idle one.

The :class:`ModelCache` is shared by every engine kind. A model's size is
measured once it is loaded (:func:`memory_of`: parameters and buffers) plus an
``extra_bytes`` estimate given by the caller (an LLM's KV cache, say). A model
that serves a request is pinned (:meth:`ModelCache.use`, or ``pin``/``unpin``)
and is never evicted; idle models are evicted least recently used first when a
new one needs room, and evicting frees the memory (references dropped,
``gc.collect()``, and ``torch.cuda.empty_cache()`` where CUDA is in use).

Callers must not keep their own long-lived reference to a cached model: hold it
only inside ``use()`` (or between ``pin`` and ``unpin``), otherwise eviction
cannot free it.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from blaze_ai.errors import BlazeError, EngineFailureError, OverloadedError, UnavailableError

T = TypeVar("T")
#: Memory beyond the weights: bytes, or a function of the loaded model that says how many.
ExtraBytes = int | Callable[[Any], int]


def memory_of(obj: object) -> int:
    """Bytes held by the tensors of ``obj``: an ``nn.Module``, a diffusers pipeline, or a container.

    A diffusers pipeline counts each ``nn.Module`` of ``obj.components``; other
    objects count the modules and tensors among their attributes, lists, tuples
    and dict values (one level deep). Shared storage is counted once.
    """
    if "torch" not in sys.modules:
        return 0  # nothing can hold tensors
    import torch

    seen: set[tuple[str, int]] = set()
    total = 0

    def add(tensor: torch.Tensor) -> None:
        nonlocal total
        storage = tensor.untyped_storage()
        ident = (str(tensor.device), storage.data_ptr())
        if ident not in seen and storage.data_ptr() != 0:
            seen.add(ident)
            total += storage.nbytes()

    def visit(value: object) -> None:
        if isinstance(value, torch.nn.Module):
            for tensor in (*value.parameters(), *value.buffers()):
                add(tensor)
        elif isinstance(value, torch.Tensor):
            add(value)

    for value in _children(obj):
        visit(value)
    return total


def _children(obj: object) -> list[object]:
    """``obj`` itself plus what it holds one level down (pipeline components, attributes, items)."""
    found: list[object] = [obj]
    components = getattr(obj, "components", None)
    if isinstance(components, dict):
        found.extend(components.values())
    elif isinstance(obj, dict):
        found.extend(obj.values())
    elif isinstance(obj, list | tuple):
        found.extend(obj)
    elif hasattr(obj, "__dict__") and not _is_module(obj):
        found.extend(vars(obj).values())
    elif hasattr(obj, "__slots__") and not _is_module(obj):
        found.extend(getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name))
    return found


def _is_module(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


@dataclass(slots=True, eq=False)
class _Entry:
    model: object
    model_bytes: int
    extra_bytes: int
    last_used: float
    loads: int
    hits: int = 0
    pins: int = 0

    @property
    def bytes(self) -> int:
        return self.model_bytes + self.extra_bytes


class ModelCache:
    """Loads models on demand and keeps them within ``budget_bytes``.

    Example::

        cache = ModelCache(2 * 1024**3)
        with cache.use("minilm", load_minilm) as model:  # pinned while inside
            vectors = model(batch)

    Thread-safe: loads of different keys run in parallel; concurrent loads of
    the same key load it once. Errors: :class:`UnavailableError` when a model
    alone is larger than the budget; :class:`OverloadedError` when it would fit
    but the models in use leave no room (retry later); a loader's exception
    becomes :class:`EngineFailureError`.
    """

    def __init__(
        self,
        budget_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sizer: Callable[[object], int] = memory_of,
        budget_origin: str = "",
    ) -> None:
        if budget_bytes < 1:
            raise ValueError("budget_bytes must be positive (for example 4 * 1024**3 for 4 GiB)")
        self.budget_bytes = budget_bytes
        #: Where the budget came from (the setting, or how it was sized), quoted in refusals.
        self.budget_origin = budget_origin
        self._clock = clock
        self._sizer = sizer
        self._lock = threading.Condition(threading.RLock())
        self._entries: dict[str, _Entry] = {}
        self._loading: set[str] = set()
        self._known_bytes: dict[str, int] = {}  # sizes of models seen before, to make room early
        self._known_extra: dict[str, int] = {}
        self._load_counts: dict[str, int] = {}
        self.loads = 0
        self.evictions = 0
        self.hits = 0
        self.misses = 0
        self.load_failures = 0

    # -- loading -----------------------------------------------------------

    def get_or_load(
        self, key: str, loader: Callable[[], T], *, extra_bytes: ExtraBytes = 0, pin: bool = False
    ) -> T:
        """Return the model under ``key``, loading it with ``loader`` if absent.

        ``extra_bytes`` is memory the model will use beyond its weights (a KV
        cache, activations): a number, or a function of the loaded model.
        With ``pin`` the model is pinned atomically (call :meth:`unpin` later);
        prefer :meth:`use`, which unpins for you.
        """
        if isinstance(extra_bytes, int) and extra_bytes < 0:
            raise ValueError("extra_bytes must be 0 or positive")
        with self._lock:
            entry = self._wait_for_entry(key)
            if entry is not None:
                self.hits += 1
                entry.hits += 1
                entry.last_used = self._clock()
                entry.pins += int(pin)
                return cast(T, entry.model)
            self.misses += 1
            self._loading.add(key)
        return cast(T, self._load(key, loader, extra_bytes, pin))

    @contextmanager
    def use(self, key: str, loader: Callable[[], T], *, extra_bytes: ExtraBytes = 0) -> Iterator[T]:
        """Get (or load) the model and keep it pinned for the ``with`` block."""
        model = self.get_or_load(key, loader, extra_bytes=extra_bytes, pin=True)
        try:
            yield model
        finally:
            del model
            self.unpin(key)

    def pin(self, key: str) -> None:
        """Protect a loaded model from eviction until a matching :meth:`unpin`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise KeyError(f"model {key!r} is not loaded; load it with get_or_load(pin=True)")
            entry.pins += 1
            entry.last_used = self._clock()

    def unpin(self, key: str) -> None:
        """Undo one :meth:`pin`; the model stays loaded but may now be evicted."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.pins == 0:
                raise KeyError(f"model {key!r} is not pinned")
            entry.pins -= 1
            entry.last_used = self._clock()

    def unload(self, key: str) -> bool:
        """Drop the model and free its memory; ``False`` if it was not loaded.

        Raises :class:`UnavailableError` if the model is in use.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            if entry.pins:
                raise UnavailableError(f"model {key!r} is in use by {entry.pins} caller(s); drain it first")
            del self._entries[key]
            entry.model = None
        _free_memory()
        return True

    def clear(self) -> None:
        """Unload every model that is not in use."""
        for key in [k for k, e in list(self._entries.items()) if not e.pins]:
            self.unload(key)

    # -- reporting ---------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def entries(self) -> list[dict[str, Any]]:
        """One plain dict per loaded model, most recently used first."""
        with self._lock:
            rows = [
                {
                    "key": key,
                    "bytes": e.bytes,
                    "model_bytes": e.model_bytes,
                    "extra_bytes": e.extra_bytes,
                    "in_use": e.pins > 0,
                    "pins": e.pins,
                    "last_used": e.last_used,
                    "loads": e.loads,
                    "hits": e.hits,
                }
                for key, e in self._entries.items()
            ]
        return sorted(rows, key=lambda row: row["last_used"], reverse=True)

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: loads, evictions, hits, misses and bytes."""
        with self._lock:
            return {
                "budget_bytes": self.budget_bytes,
                "bytes_loaded": self._bytes_loaded(),
                "bytes_pinned": sum(e.bytes for e in self._entries.values() if e.pins),
                "models": len(self._entries),
                "loading": len(self._loading),
                "loads": self.loads,
                "evictions": self.evictions,
                "hits": self.hits,
                "misses": self.misses,
                "load_failures": self.load_failures,
            }

    # -- internals ---------------------------------------------------------

    def _wait_for_entry(self, key: str) -> _Entry | None:
        """The loaded entry, waiting out another thread's load of the same key (lock held)."""
        while key in self._loading:
            self._lock.wait()
        return self._entries.get(key)

    def _load(self, key: str, loader: Callable[[], object], extra_bytes: ExtraBytes, pin: bool) -> object:
        """Load outside the lock (other keys stay served), then admit; always end the loading mark."""
        try:
            known = self._known_bytes.get(key)
            if known is not None:  # a reload: make room before spending the memory
                with self._lock:
                    evicted = self._make_room(key, known, self._known_extra.get(key, 0))
                _free_memory(evicted)
            try:
                model = loader()
            except BlazeError:
                raise
            except Exception as exc:
                raise EngineFailureError(f"loading model {key!r} failed: {exc!r}") from exc
            return self._admit(key, model, extra_bytes, pin)
        except BaseException:
            with self._lock:
                self.load_failures += 1
            model = None  # a model that did not fit: free it before raising
            _free_memory()
            raise
        finally:
            with self._lock:
                self._loading.discard(key)
                self._lock.notify_all()

    def _admit(self, key: str, model: object, extra: ExtraBytes, pin: bool) -> object:
        """Measure the loaded model, evict to make room and insert it (or raise, inserting nothing)."""
        model_bytes = self._sizer(model)
        extra_bytes = extra(model) if callable(extra) else extra
        with self._lock:
            self._known_bytes[key] = model_bytes
            self._known_extra[key] = extra_bytes
            try:
                evicted = self._make_room(key, model_bytes, extra_bytes)
            except BlazeError:
                del model  # the traceback keeps this frame alive: do not let it keep the model
                raise
            loads = self._load_counts.get(key, 0) + 1
            self._load_counts[key] = loads
            self._entries[key] = _Entry(model, model_bytes, extra_bytes, self._clock(), loads, pins=int(pin))
            self.loads += 1
        _free_memory(evicted)
        return model

    def _make_room(self, key: str, model_bytes: int, extra_bytes: int) -> list[_Entry]:
        """Evict idle models, least recently used first, until the model and its extra fit (lock held).

        Raises before evicting anything when the models in use leave no room.
        """
        needed = model_bytes + extra_bytes
        if needed > self.budget_bytes:
            raise self._too_large(key, model_bytes, extra_bytes)
        pinned = {k: e for k, e in self._entries.items() if e.pins}
        if sum(e.bytes for e in pinned.values()) + needed > self.budget_bytes:
            raise OverloadedError(
                f"no room for model {key!r} ({needed:,} bytes): the models in use "
                f"({', '.join(pinned)}) hold the budget; retry when they are idle",
                retry_after=1.0,
            )
        evicted: list[_Entry] = []
        idle = sorted((e.last_used, k) for k, e in self._entries.items() if not e.pins)
        for _, victim in idle:
            if self._bytes_loaded() + needed <= self.budget_bytes:
                break
            evicted.append(self._entries.pop(victim))
            self.evictions += 1
        return evicted

    def _bytes_loaded(self) -> int:
        return sum(e.bytes for e in self._entries.values())

    def _too_large(self, key: str, model_bytes: int, extra_bytes: int) -> UnavailableError:
        """The refusal of a model larger than the whole budget: what it needs, by how much it is short."""
        needed = model_bytes + extra_bytes
        split = f"{_mib(model_bytes)} of weights + {_mib(extra_bytes)} of KV cache or activations"
        parts = f" ({split})" if extra_bytes else ""
        origin = f" ({self.budget_origin})" if self.budget_origin else ""
        return UnavailableError(
            f"model {key!r} needs {_mib(needed)}{parts} but the model cache budget is "
            f"{_mib(self.budget_bytes)}{origin}: {_mib(needed - self.budget_bytes)} short. Raise the budget "
            "(server.model_memory_budget_mb), lower the reservation (an LLM's max_tokens_in_flight), "
            "or load smaller weights (a smaller dtype, a quantization)"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _free_memory(evicted: list[_Entry] | None = None) -> None:
    """Drop the evicted models and return their memory (to the OS or the CUDA allocator)."""
    if evicted is not None:
        if not evicted:
            return  # nothing was evicted: skip the (slow) collection
        for entry in evicted:
            entry.model = None
        evicted.clear()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
