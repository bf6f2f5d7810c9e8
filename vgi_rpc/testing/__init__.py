"""Test your Sentry instrumentation against the real SDK, with nothing sent anywhere.

The public face is :func:`sentry_capture`, available two ways:

* as a **pytest fixture** (registered automatically by the ``pytest11`` entry
  point when ``vgi_rpc`` is installed -- no ``conftest.py`` needed)::

      def test_checkout_reports_errors(sentry_capture):
          client.call_that_fails()
          event = sentry_capture.event(method="checkout")
          assert event["tags"]["rpc.method"] == "checkout"

* as a **context manager**, taking any ``sentry_sdk.init`` option::

      with sentry_capture(environment="staging", attach_stacktrace=True) as cap:
          ...
      assert cap.events == []

Inside, the real ``sentry_sdk`` is initialised with an
:class:`~vgi_rpc.testing.fake_transport.InMemoryTransport` against fresh scopes;
on exit the scopes and client that were active before are put back. Everything
read from a :class:`SentryCapture` is plain JSON data, read after a flush;
:meth:`SentryCapture.trace` gives one trace's spans with their parent links
and its error events (a :class:`CapturedTrace`).
:class:`RecordingHook` records what each dispatch saw, for testing hooks and
servers without Sentry. The user documentation -- isolation, caveats (threads,
the SDK's background workers, ``before_send``, ``release``), options, snapshots --
is docs/testing.md; ``RecordingHook`` is in the README's "Dispatch hooks".

This module sets the SDK up and puts it back (:func:`sentry_capture`); what a
capture gives is :class:`SentryCapture` (``_capture``), which reads payloads of
either SDK generation with ``_payloads`` and lists them with ``_describe``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vgi_rpc._telemetry import reset_context_var
from vgi_rpc.testing._capture import FLUSH_TIMEOUT, SentryCapture
from vgi_rpc.testing._recording import RecordedCall, RecordingHook
from vgi_rpc.testing._trace import CapturedTrace

if TYPE_CHECKING:
    from vgi_rpc.testing.fake_transport import InMemoryTransport, envelope_to_dict

for _public in (SentryCapture, RecordingHook, RecordedCall, CapturedTrace):
    _public.__module__ = __name__  # their public home
del _public

__all__ = [
    "DEFAULT_DSN",
    "DEFAULT_RELEASE",
    "CapturedTrace",
    "InMemoryTransport",
    "RecordedCall",
    "RecordingHook",
    "SentryCapture",
    "envelope_to_dict",
    "sentry_capture",
]

#: The DSN a capture uses unless told otherwise.  ``.invalid`` is reserved
#: (RFC 2606) and never resolves; the in-memory transport never connects anyway.
DEFAULT_DSN = "https://public@sentry.invalid/1"

#: The ``release`` a capture uses unless told otherwise.  Left unset, the SDK
#: derives one from the machine -- ``SENTRY_RELEASE``, the git commit of the
#: checkout, CI variables -- and sends session updates only where it finds one,
#: so the same test would send different envelopes in a git checkout and in an
#: unpacked package.
DEFAULT_RELEASE = "sentry-capture"


def __getattr__(name: str) -> Any:
    # ``sentry_sdk`` is imported only when a capture is used: the pytest plugin
    # imports this package in every test session, and importing Sentry there
    # would change what ``"sentry_sdk" in sys.modules`` means for the code under test.
    if name in ("InMemoryTransport", "envelope_to_dict"):
        from vgi_rpc.testing import fake_transport

        return getattr(fake_transport, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def sentry_capture(**init_options: Any) -> Iterator[SentryCapture]:
    """Initialise the real Sentry SDK with an in-memory transport; yield a :class:`SentryCapture`.

    ``init_options`` go to ``sentry_sdk.init`` on top of these defaults:
    ``dsn=DEFAULT_DSN``, ``traces_sample_rate=1.0``, ``release=DEFAULT_RELEASE``
    (default integrations stay on unless you pass ``default_integrations=False``).
    ``transport`` may not be passed: the capture's transport is the point.
    Pass ``release=None`` to let the SDK derive a release from the machine.

    On exit (also on error) the capture's client is flushed and closed, and
    the previous global scope, isolation scope and current scope -- hence the
    previous client -- are restored.  Must be entered and exited in the same
    thread/context (pytest does that for fixtures).  Caveats (threads, SDK
    background workers, ``before_send``): docs/testing.md, "Caveats".

    Also available as the pytest fixture ``sentry_capture``.
    """
    from vgi_rpc._extras import require

    require("sentry_capture", "sentry")
    import sentry_sdk
    import sentry_sdk.scope as _sentry_scope

    from vgi_rpc.testing.fake_transport import InMemoryTransport

    if "transport" in init_options:
        raise TypeError("sentry_capture() provides its own transport; do not pass 'transport'")
    options: dict[str, Any] = {"dsn": DEFAULT_DSN, "traces_sample_rate": 1.0, "release": DEFAULT_RELEASE}
    options.update(init_options)
    transport = InMemoryTransport()
    options["transport"] = transport
    cap = SentryCapture(transport, init_options)

    saved_global = _sentry_scope._global_scope
    iso_token = _sentry_scope._isolation_scope.set(None)
    cur_token = _sentry_scope._current_scope.set(None)
    _sentry_scope._global_scope = None
    try:
        sentry_sdk.init(**options)
        client = sentry_sdk.get_client()
        if not isinstance(client, sentry_sdk.Client):  # pragma: no cover - SDK contract
            raise RuntimeError(f"sentry_sdk.init did not install a client (got {client!r})")
        cap.client = client
        cap._active = True
        yield cap
    finally:
        try:
            cap.flush()
        finally:
            cap._active = False
            fresh_global = _sentry_scope._global_scope
            final_client = fresh_global.client if fresh_global is not None else None
            if cap.client is not None:
                cap.client.close(timeout=FLUSH_TIMEOUT)
            if isinstance(final_client, sentry_sdk.Client) and final_client is not cap.client:
                final_client.close(timeout=FLUSH_TIMEOUT)
            _sentry_scope._global_scope = saved_global
            reset_context_var(_sentry_scope._current_scope, cur_token)  # exited in another context too
            reset_context_var(_sentry_scope._isolation_scope, iso_token)
