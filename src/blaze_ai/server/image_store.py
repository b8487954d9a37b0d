"""A bounded, expiring in-memory store for generated images served by URL.

``response_format: url`` answers with ``/v1/images/files/{id}``; the PNG stays
here for ``server.image_url_ttl_s`` seconds, and the store never holds more
than ``max_images`` images or ``max_bytes`` bytes (the oldest go first). Ids
are random 144-bit tokens.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_IMAGES = 256
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class ImageStore:
    """PNG bytes by id, until they expire or are pushed out."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_images: int = DEFAULT_MAX_IMAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def put(self, png: bytes) -> str:
        """Store an image; returns its id."""
        self._expire()
        image_id = secrets.token_urlsafe(18)
        self._items[image_id] = (self.clock() + self.ttl_s, png)
        self._bytes += len(png)
        while len(self._items) > self.max_images or (self._bytes > self.max_bytes and len(self._items) > 1):
            self._pop_oldest()
        return image_id

    def get(self, image_id: str) -> bytes | None:
        """The image, or None when unknown or expired."""
        self._expire()
        item = self._items.get(image_id)
        return item[1] if item else None

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def _expire(self) -> None:
        now = self.clock()
        while self._items and next(iter(self._items.values()))[0] <= now:
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        _, (_, png) = self._items.popitem(last=False)
        self._bytes -= len(png)
