"""Session fixtures of the testing-kit suites: the users' venvs, built once per session.

``user_base_env`` is what a user of the testing kit installs,
``vgi-rpc[http,sentry,testing]`` from a wheel (``test_user_project_snapshots_and_extras.py``: it
also proves that ``vgi_rpc.otel`` names its extra where OpenTelemetry really is
not installed). ``user_full_env`` adds ``[relay,otel]`` on top of it, in a venv
of its own (``test_user_project_relay_otel_ratios.py``). Both use the running suite's
sentry-sdk. See ``support/user_venv.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.user_venv import UserEnv, build_wheel, make_venv

BASE_EXTRAS = "http,sentry,testing"
FULL_EXTRAS = "sentry,relay,testing,otel,http"


@pytest.fixture(scope="session")
def user_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel (built once per session)."""
    return build_wheel(tmp_path_factory.mktemp("user-wheel"))


@pytest.fixture(scope="session")
def user_base_env(tmp_path_factory: pytest.TempPathFactory, user_wheel: Path) -> UserEnv:
    """A fresh venv with ``vgi-rpc[http,sentry,testing]`` installed from the wheel."""
    return make_venv(tmp_path_factory.mktemp("user-base") / "venv", user_wheel, BASE_EXTRAS)


@pytest.fixture(scope="session")
def user_full_env(
    tmp_path_factory: pytest.TempPathFactory, user_wheel: Path, user_base_env: UserEnv
) -> UserEnv:
    """A second venv: ``vgi-rpc[sentry,relay,testing,otel,http]``, the base venv's packages reused."""
    return make_venv(
        tmp_path_factory.mktemp("user-full") / "venv",
        user_wheel,
        FULL_EXTRAS,
        on_top_of=user_base_env,
    )
