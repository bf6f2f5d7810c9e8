"""Peer conformance: our port of the official ``ConformanceService`` and its workers.

* ``_types.py`` / ``_protocol.py``: the interface of vgi-rpc 0.52.2's conformance
  service, written against our API;
* ``_impl.py``: our implementation;
* ``worker.py``: serves it over stdin/stdout (``vgi-rpc-test --cmd``);
* ``http_worker.py``: serves it over HTTP (``vgi-rpc-test --url``).

``scripts/conformance.py`` (``make conformance``) drives both with the official
runner; ``test_reference_server.py`` runs our client against the official reference
server; ``docs/conformance.md`` lists what is left out and why.
"""
