"""Measures ``RpcServer(...)`` construction in a fresh interpreter (run by ``test_construction.py``).

``python -m benchmarks._construct_worker --rounds R --ops N [--sentry]`` prints one
JSON object: the per-round samples (ns per construction) of

* ``RpcServer`` -- the real class, auto-attach seam included;
* ``seam disabled`` -- a subclass whose ``_auto_attach`` (the seam: the one method
  ``RpcServer.__init__`` calls to look for Sentry) does nothing, so it is the same
  construction minus the seam, following the product code as it changes, with
  nothing patched.

Why a fresh interpreter: the seam's cost depends on whether ``sentry_sdk`` is in
``sys.modules``, and a pytest process that ran any Sentry benchmark has it
imported for good.  Without ``--sentry`` the worker checks ``sentry_sdk`` stays
unimported; with ``--sentry`` it initialises the SDK (in-memory transport) first,
so the seam attaches the default Sentry hook on every construction.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def seamless_server_class() -> type:
    """A ``RpcServer`` subclass with the auto-attach seam switched off."""
    from vgi_rpc.server import RpcServer

    class SeamDisabledServer(RpcServer):
        def _auto_attach(self) -> None:
            return None

    return SeamDisabledServer


def main(argv: list[str] | None = None) -> None:
    """Measure and print the JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--ops", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sentry", action="store_true", help="initialise sentry_sdk first (auto-attach on)")
    args = parser.parse_args(argv)

    from benchmarks._services import Bench, BenchImpl
    from vgi_rpc import RpcServer
    from vgi_rpc.testing.bench import Interleaved

    baseline_cls = seamless_server_class()
    impl = BenchImpl()

    def real(n: int) -> None:
        for _ in range(n):
            RpcServer(Bench, impl)

    def seam_disabled(n: int) -> None:
        for _ in range(n):
            baseline_cls(Bench, impl)

    def measure() -> dict[str, Any]:
        sampler = Interleaved(
            {"seam disabled": seam_disabled, "RpcServer": real}, ops=args.ops, clock="thread"
        )
        sampler.run(args.rounds, warmup=args.warmup)
        hooked = bool(RpcServer(Bench, impl).hooks)
        return {
            "samples": sampler.samples,
            "ops": args.ops,
            "sentry_imported": "sentry_sdk" in sys.modules,
            "hook_attached": hooked,
        }

    if args.sentry:
        from vgi_rpc.testing import sentry_capture

        with sentry_capture():
            result = measure()
    else:
        result = measure()
        if result["sentry_imported"]:
            raise RuntimeError("sentry_sdk got imported while measuring construction without Sentry")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
