"""The pytest plugin in a user's project: project-wide capture options.

Every test here builds a small project with ``pytester`` and runs pytest on it
in a subprocess, so the fixtures, the ini option and the report hook can only
come from the installed ``pytest11`` entry point -- as in a user's suite. The
real SDK runs with the in-memory transport; nothing is mocked.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

RUN = ("-p", "no:cacheprovider")

# -- project-wide options -------------------------------------------------------------------------

_OPTIONS_TESTS = """
import pytest
import sentry_sdk


def test_ini_options_reach_every_capture(sentry_capture):
    options = sentry_capture.client.options
    assert options["environment"] == "ci"
    assert options["send_default_pii"] is True
    assert options["max_breadcrumbs"] == 7
    assert options["in_app_include"] == ["shop"]
    assert options["server_name"] == "build host"  # a bare word stays text
    assert dict(sentry_capture.init_options) == {{
        "environment": "ci", "send_default_pii": True, "max_breadcrumbs": 7,
        "in_app_include": ["shop"], "server_name": "build host"{fixture_extra}
    }}


@pytest.mark.sentry_options(environment="marked", max_breadcrumbs=1)
def test_the_marker_overrides_the_project(sentry_capture):
    options = sentry_capture.client.options
    assert options["environment"] == "marked"
    assert options["max_breadcrumbs"] == 1
    assert options["send_default_pii"] is True  # the rest of the project's options stay
"""

_INI = """
[pytest]
sentry_options =
    environment = ci
    send_default_pii = true
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
