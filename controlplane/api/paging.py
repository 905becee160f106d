"""Paged lists of the public API (AIP-158): page sizes, page tokens, byte budgets.

A page token carries the key (member name, client id) of the last item returned
and a digest of the RPC and its filters, base64url-encoded JSON: opaque to
callers, but small and stateless for the agent, so any agent restart or any
number of concurrent readers costs nothing. The next page continues with the
keys after that one, so items that appear or vanish between two pages never
shift the others: nothing is skipped and nothing is repeated. A token used with
other filters (or with another RPC) is refused, naming `page_token`.

A page holds at most `page_size` items and always fits in a response of the
public message limit; it may hold fewer items than asked, which AIP-158 allows.
Without `page_size` and `page_token` a list is answered whole, as before paging
existed, unless it would not fit: then the caller is told to page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from controlplane.errors import InvalidArgument, ResourceExhausted

# AIP-158: a page size above the maximum is coerced down to it.
MAX_PAGE_SIZE = 1000
# The public API's message limit (gRPC's default), for requests and responses alike.
MAX_PUBLIC_MESSAGE_BYTES = 4 * 1024 * 1024
# Room kept for the response's other fields (the next page token, small scalars).
_RESPONSE_RESERVE = 4096
# A token holds one key (at most 128 characters, so at most 512 bytes of UTF-8) and
# a digest; anything much longer was not issued by this API.
MAX_PAGE_TOKEN_CHARS = 2048
_TOKEN_VERSION = 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page request: how many items, after which key, under which filters."""

    # None: every item in one response (no page_size and no page_token).
    size: int | None
    # The key of the last item of the previous page; None for the first page.
    after: str | None
    digest: str

    def token_after(self, key: str) -> str:
        """The next_page_token of a page whose last item has `key`."""
        body = json.dumps(
            {"v": _TOKEN_VERSION, "after": key, "filters": self.digest},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def filters_digest(rpc: str, *filters: object) -> str:
    """A short digest of the RPC and its filters (JSON-serializable values, in a fixed
    order), carried by tokens so that a token only continues the listing it began."""
    canonical = json.dumps([rpc, *filters], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _bad_token(description: str) -> InvalidArgument:
    return InvalidArgument.for_field("page_token", description)


def _decode_token(token: str) -> tuple[str, str]:
    """(after, digest) of a token this API issued."""
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise _bad_token(
            f"must be at most {MAX_PAGE_TOKEN_CHARS} characters, got {len(token)}; "
            "send the next_page_token of the previous page unchanged"
        )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw.decode())
    # RecursionError: a forged token nesting deeper than the interpreter's limit.
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        body = None
    if (
        not isinstance(body, dict)
        or body.get("v") != _TOKEN_VERSION
        or not isinstance(body.get("after"), str)
        or not isinstance(body.get("filters"), str)
    ):
        raise _bad_token(
            "is not a page token of this API; send the next_page_token of the previous "
            "page unchanged, or none to start over"
        )
    return body["after"], body["filters"]


def page_request(page_size: int, page_token: str, digest: str) -> PageRequest:
    """Validates `page_size` and `page_token` against the request's filter digest."""
    if page_size < 0:
        raise InvalidArgument.for_field(
            "page_size",
            f"must be 0 to {MAX_PAGE_SIZE} (larger values mean {MAX_PAGE_SIZE}), got {page_size}",
        )
    after = None
    if page_token:
        after, issued_for = _decode_token(page_token)
        if issued_for != digest:
            raise _bad_token(
                "was issued for other filters; send the same filters as for the first page, "
                "or no page_token to start over"
            )
    if page_size == 0 and after is None:
        return PageRequest(None, None, digest)
    return PageRequest(min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE), after, digest)


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def entry_bytes(message_size: int) -> int:
    """What one element of a repeated message field with a small field number adds to
    its message: a one-byte tag, the length prefix, the element."""
    return 1 + _varint_size(message_size) + message_size


def take_page(
    items: Iterable[T],
    request: PageRequest,
    size_of: Callable[[T], int],
    key_of: Callable[[T], str],
    *,
    budget: int = MAX_PUBLIC_MESSAGE_BYTES - _RESPONSE_RESERVE,
) -> tuple[list[T], str]:
    """The page of `items` (matching items in key order, after `request.after`) and its
    next_page_token ("" on the last page). `size_of` is an item's encoded size; items
    are only pulled as far as the page needs, plus one to know whether more exist."""
    page: list[T] = []
    used = 0
    iterator = iter(items)
    for item in iterator:
        if request.size is not None and len(page) == request.size:
            return page, request.token_after(key_of(page[-1]))
        cost = entry_bytes(size_of(item))
        if used + cost > budget:
            if request.size is None:
                raise ResourceExhausted(
                    f"page_size: the whole list does not fit in one response of at most "
                    f"{MAX_PUBLIC_MESSAGE_BYTES // (1024 * 1024)} MiB; ask for pages with "
                    f"page_size (at most {MAX_PAGE_SIZE})"
                )
            if page:
                return page, request.token_after(key_of(page[-1]))
            # A single item always fits (items are bounded far below the limit); this
            # only guarantees progress should one ever not.
        page.append(item)
        used += cost
    return page, ""
