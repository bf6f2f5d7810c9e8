"""``str(RpcError)`` names the server's exception type once.

The wire's EXCEPTION message is already ``"<Type>: <message>"`` (as the reference
server writes it), and the client keeps it as ``error_message``; the error's text
must not put the type in front a second time (``'OutOfStock: OutOfStock: ...'``).
"""

from __future__ import annotations

from typing import Protocol

import pytest

from vgi_rpc import RpcError, RpcServer, serve_pipe


class OutOfStock(Exception):
    """A business error with its own type name."""


class Shop(Protocol):
    def buy(self, item: str, count: int) -> int: ...


class ShopImpl:
    def buy(self, item: str, count: int) -> int:
        raise OutOfStock(f"only 3 x {item} left, {count} wanted")


def test_a_server_error_names_its_type_once() -> None:
    with serve_pipe(RpcServer(Shop, ShopImpl())) as shop, pytest.raises(RpcError) as info:
        shop.buy(item="PEAR", count=5)
    error = info.value
    assert str(error) == "OutOfStock: only 3 x PEAR left, 5 wanted"
    assert error.error_type == "OutOfStock"
    assert error.error_message == "OutOfStock: only 3 x PEAR left, 5 wanted"  # as the server sent it


@pytest.mark.parametrize(
    ("error_type", "message", "text"),
    [
        ("ValueError", "ValueError: bad", "ValueError: bad"),
        ("TransportError", "pipe transport failed", "TransportError: pipe transport failed"),
        ("ValueError", "ValueError: ValueError: x", "ValueError: ValueError: x"),  # the server's own text
        ("ValueError", "ValueErrors: x", "ValueError: ValueErrors: x"),
        ("EXCEPTION", "", "EXCEPTION: "),
    ],
)
def test_the_type_is_put_in_front_only_when_the_message_lacks_it(
    error_type: str, message: str, text: str
) -> None:
    assert str(RpcError(error_type, message)) == text
