"""docs/http.md "Running several workers" shows the deployment ``make deploy-check`` runs.

The page promises that its gunicorn and nginx configuration (and the app's set-up)
are exactly the files the check uses; this keeps the two from drifting apart. The
check itself (``scripts/deploy_check.py``: gunicorn, nginx, SIGKILL) runs in CI on
each Sentry SDK line (``make test-sdk3``, ``make test-sdk2``), not inside ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "http.md").read_text()
SECTION = DOC[DOC.index("## Running several workers") :]


@pytest.mark.parametrize("name", ["gunicorn.conf.py", "nginx.conf"])
def test_the_page_shows_the_exact_config_the_check_uses(name: str) -> None:
    text = (ROOT / "deploy" / name).read_text().rstrip()
    assert f"\n{text}\n```" in SECTION, f"docs/http.md does not show deploy/{name} as it is"


def test_the_page_shows_how_the_app_is_built() -> None:
    app = (ROOT / "deploy" / "app.py").read_text()
    build = app[app.index("def _build()") :].rstrip()
    assert f"\n{build}\n```" in SECTION


def test_the_check_is_wired_into_make_and_ci() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "deploy-check:" in makefile
    line = makefile[
        makefile.index("define sdk_line") : makefile.index("endef", makefile.index("define sdk_line"))
    ]
    assert "scripts/deploy_check.py" in line  # what each SDK line runs besides its suites
    assert "$(call sdk_line,$(VENV))" in makefile and "$(call sdk_line,$(SDK2))" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test-sdk3" in ci and "make test-sdk2" in ci
    assert "MEASURED" not in SECTION, "fill in the measured calls/s"
