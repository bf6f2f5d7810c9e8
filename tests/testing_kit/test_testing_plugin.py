"""The pytest plugin in a user's project: project-wide capture options, and the failure report.

Every test here builds a small project with ``pytester`` and runs pytest on it
in a subprocess, so the fixtures, the ini option and the report hook can only
come from the installed ``pytest11`` entry point -- as in a user's suite. The
real SDK runs with the in-memory transport; nothing is mocked.
"""

from __future__ import annotations

import pytest
from support.sentry import STREAMING

pytest_plugins = ["pytester"]

RUN = ("-p", "no:cacheprovider")

# -- project-wide options -------------------------------------------------------------------------

_OPTIONS_TESTS = """
import pytest
import sentry_sdk


def test_ini_options_reach_every_capture(sentry_capture):
    options = sentry_capture.client.options
    assert options["environment"] == "ci"
    assert options["attach_stacktrace"] is True
    assert options["max_breadcrumbs"] == 7
    assert options["in_app_include"] == ["shop"]
    assert options["server_name"] == "build host"  # a bare word stays text
    assert dict(sentry_capture.init_options) == {{
        "environment": "ci", "attach_stacktrace": True, "max_breadcrumbs": 7,
        "in_app_include": ["shop"], "server_name": "build host"{fixture_extra}
    }}


@pytest.mark.sentry_options(environment="marked", max_breadcrumbs=1)
def test_the_marker_overrides_the_project(sentry_capture):
    options = sentry_capture.client.options
    assert options["environment"] == "marked"
    assert options["max_breadcrumbs"] == 1
    assert options["attach_stacktrace"] is True  # the rest of the project's options stay
"""

# Options both SDK generations know (sentry-sdk 3 has no ``send_default_pii``: it fails
# at setup with "Unknown option", as any unknown option does -- tested below).
_INI = """
[pytest]
sentry_options =
    environment = ci
    attach_stacktrace = true
    max_breadcrumbs = 7
    in_app_include = ["shop"]
    server_name = build host
"""


def test_ini_option_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makeini(_INI)
    pytester.makepyfile(test_opts=_OPTIONS_TESTS.format(fixture_extra=""))
    pytester.runpytest_subprocess(*RUN).assert_outcomes(passed=2)


def test_a_conftest_fixture_adds_python_objects_without_any_import(pytester: pytest.Pytester) -> None:
    """The documented conftest pattern: override ``sentry_options``, building on the ini options."""
    pytester.makeini(_INI)
    pytester.makeconftest(
        """
        import pytest


        def drop_health_checks(event, hint):
            return None if event.get("transaction") == "rpc health" else event


        @pytest.fixture
        def sentry_options(sentry_options):
            return {**sentry_options, "before_send": drop_health_checks}
        """
    )
    pytester.makepyfile(
        test_opts=_OPTIONS_TESTS.format(fixture_extra=', "before_send": conftest.drop_health_checks')
        + """
import conftest


def test_before_send_from_the_conftest_runs(sentry_capture):
    with sentry_sdk.new_scope() as scope:
        scope.set_transaction_name("rpc health")
        sentry_sdk.capture_message("dropped")
    sentry_sdk.capture_message("kept")
    assert [e["message"] for e in sentry_capture.events] == ["kept"]
"""
    )
    pytester.runpytest_subprocess(*RUN).assert_outcomes(passed=3)


@pytest.mark.parametrize("where", ["ini", "marker", "conftest"])
def test_an_unknown_option_fails_the_test_at_setup_with_the_sdks_message(
    pytester: pytest.Pytester, where: str
) -> None:
    if where == "ini":
        pytester.makeini("[pytest]\nsentry_options =\n    traces_sample_rat = 1.0\n")
    elif where == "conftest":
        pytester.makeconftest(
            "import pytest\n\n@pytest.fixture\ndef sentry_options():\n    return {'traces_sample_rat': 1.0}\n"
        )
    marker = "@pytest.mark.sentry_options(traces_sample_rat=1.0)\n" if where == "marker" else ""
    pytester.makepyfile(
        test_bad=f"""
import pytest

{marker}def test_uses_the_capture(sentry_capture):
    raise AssertionError("the body ran: the bad option was not caught at setup")
"""
    )
    result = pytester.runpytest_subprocess(*RUN)
    result.assert_outcomes(errors=1)  # an error at setup: the test body never ran
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_uses_the_capture*", "*TypeError: Unknown option 'traces_sample_rat'*"]
    )


def test_a_malformed_ini_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nsentry_options =\n    environment: ci\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sentry_options: 'environment: ci' is not 'name = value'*"])


# -- the "Captured Sentry envelopes" report section -----------------------------------------------

_SHOP = """
from typing import Protocol

import pytest
import sentry_sdk

from vgi_rpc import RpcError, RpcServer, serve_pipe
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry


class Shop(Protocol):
    def checkout(self, cart_id: str) -> str: ...


class ShopImpl:
    def checkout(self, cart_id: str) -> str:
        raise LookupError(f"cart {cart_id} is empty")


def test_failing_with_an_error_event(sentry_capture):
    server = instrument_server_sentry(RpcServer(Shop, ShopImpl()), SentryConfig(enable_performance=True))
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.checkout(cart_id="c-1")
    assert sentry_capture.events[0]["tags"]["rpc.method"] == "pay"  # wrong on purpose


def test_failing_on_a_message_event(sentry_capture):
    sentry_sdk.capture_message("payment provider slow", level="warning")
    assert sentry_capture.events[0]["tags"]["provider"] == "acme"  # KeyError: 'tags' -- the report says why


def test_passing(sentry_capture):
    sentry_sdk.capture_message("PASSING-TEST-MESSAGE")
    assert len(sentry_capture.events) == 1


def test_failing_without_the_capture():
    assert 1 == 2
"""


ROOT_LINE = (
    "span (1): segment 'vgi_rpc/checkout' rpc.method='checkout' op=rpc.server status=error"
    if STREAMING
    else "transaction 'vgi_rpc/checkout' rpc.method='checkout' op=rpc.server status=internal_error"
)
"""The report line of the failed call's root span, as each SDK generation sends it."""


def _sections(output: str) -> list[str]:
    """The text of each "Captured Sentry envelopes" section in pytest's output, in order."""
    chunks = output.split(" Captured Sentry envelopes ")[1:]
    return [chunk.split("\n", 1)[1].split("\n_", 1)[0].split("\n=", 1)[0] for chunk in chunks]


@pytest.mark.parametrize("verbosity", [[], ["-q"], ["-vv"], ["-n", "2"]], ids=["default", "q", "vv", "xdist"])
def test_a_failing_test_shows_what_was_captured(pytester: pytest.Pytester, verbosity: list[str]) -> None:
    pytester.makepyfile(test_shop=_SHOP)
    result = pytester.runpytest_subprocess(*RUN, "-rA", *verbosity)
    result.assert_outcomes(passed=1, failed=3)
    output = result.stdout.str()
    sections = _sections(output)
    assert len(sections) == 2, output  # the two failing tests that used the capture; nothing else
    by_test = {("cart c-1" in s): s for s in sections}
    error, message = by_test[True], by_test[False]
    # one line per item: type, name, rpc.method, level, exception, status
    assert (
        "event 'rpc checkout' rpc.method='checkout' level=error exception=LookupError: cart c-1 is empty"
        in error
    )
    # the call's root: a transaction on 2.x, a streamed segment on 3.x -- as informative either way
    assert ROOT_LINE in error
    assert "event (no transaction) level=warning message='payment provider slow' (no tags)" in message
    assert "PASSING-TEST-MESSAGE" not in output  # -rA shows passing tests' sections: there is none
    assert "KeyError: 'tags'" in output


def test_the_section_appears_once_when_setup_and_teardown_fail_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_phases="""
import pytest
import sentry_sdk


@pytest.fixture
def breaks_on_teardown():
    yield
    raise RuntimeError("teardown broke")


def test_call_and_teardown_fail(sentry_capture, breaks_on_teardown):
    sentry_sdk.capture_message("ONCE")
    raise AssertionError("call failed")
"""
    )
    result = pytester.runpytest_subprocess(*RUN)
    result.assert_outcomes(failed=1, errors=1)
    assert len(_sections(result.stdout.str())) == 1
    result.stdout.fnmatch_lines(
        ["*Captured Sentry envelopes*", "*event (no transaction) level=info message='ONCE'*"]
    )
