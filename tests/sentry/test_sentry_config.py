"""SentryConfig's surface: exactly the documented fields and defaults, immutable (S31, S32)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import pytest

from vgi_rpc.sentry import SentryConfig, default_redactor, instrument_server_sentry, noop_redactor

# The signature printed in the documentation page, field by field, in order.
DOCUMENTED_DEFAULTS: list[tuple[str, Any]] = [
    ("enable_error_capture", True),
    ("enable_performance", False),
    ("record_request_context", True),
    ("custom_tags", {}),
    ("ignored_exceptions", ()),
    ("op_name", "rpc.server"),
    ("claim_tags", {}),
    ("user_claim_map", {"username": "preferred_username", "email": "email", "name": "name"}),
    ("set_transaction_name", True),
    ("record_params", False),
    ("tag_params", ()),
    ("param_redactor", None),
    ("max_param_value_bytes", 1024),
]


def test_fields_and_defaults_are_exactly_the_documented_ones() -> None:
    """S31: the dataclass has exactly the page's fields, in order, with the page's defaults."""
    assert dataclasses.is_dataclass(SentryConfig)
    assert [f.name for f in dataclasses.fields(SentryConfig)] == [name for name, _ in DOCUMENTED_DEFAULTS]
    config = SentryConfig()
    for name, default in DOCUMENTED_DEFAULTS:
        assert getattr(config, name) == default, name


def test_documented_annotations() -> None:
    """S31: field types as documented (string annotations, compared textually)."""
    annotations = {f.name: f.type for f in dataclasses.fields(SentryConfig)}
    assert annotations["custom_tags"] == "Mapping[str, str]"
    assert annotations["ignored_exceptions"] == "tuple[type[BaseException], ...]"
    assert annotations["tag_params"] == "Sequence[str]"
    assert annotations["param_redactor"] == "Callable[[Mapping[str, Any]], Mapping[str, Any]] | None"
    assert annotations["max_param_value_bytes"] == "int"


def test_frozen_and_mappings_read_only() -> None:
    """S31: immutable: attributes cannot be reassigned and mapping fields cannot be mutated."""
    tags = {"env": "prod"}
    config = SentryConfig(custom_tags=tags)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.op_name = "x"  # type: ignore[misc]
    for name in ("custom_tags", "claim_tags", "user_claim_map"):
        value = getattr(config, name)
        assert isinstance(value, Mapping)
        with pytest.raises(TypeError):
            value["new"] = "x"
    tags["env"] = "changed"  # the caller's dict is copied, not aliased
    assert config.custom_tags == {"env": "prod"}


def test_defaults_are_not_shared_between_instances() -> None:
    """S31: mutable-looking defaults are per instance (and read-only anyway)."""
    assert SentryConfig().user_claim_map is not SentryConfig().user_claim_map


def test_sequences_are_normalised_to_tuples() -> None:
    """S31: tag_params and ignored_exceptions accept any sequence and are stored as tuples."""
    config = SentryConfig(tag_params=["a", "b"], ignored_exceptions=[KeyError])  # type: ignore[arg-type]
    assert config.tag_params == ("a", "b")
    assert config.ignored_exceptions == (KeyError,)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_max_param_value_bytes_must_be_a_positive_int(bad: Any) -> None:
    """S24: a cap that could not be honoured is rejected at construction, not at dispatch."""
    with pytest.raises(ValueError, match="max_param_value_bytes"):
        SentryConfig(max_param_value_bytes=bad)


def test_tag_params_as_a_bare_string_is_rejected() -> None:
    """S21: tag_params=("table") (a str, not a tuple) would whitelist single letters: refuse it."""
    with pytest.raises(TypeError, match="tag_params"):
        SentryConfig(tag_params="table")


def test_equal_configs_compare_equal() -> None:
    """S31: a plain value object."""
    assert SentryConfig(custom_tags={"a": "b"}) == SentryConfig(custom_tags={"a": "b"})
    assert SentryConfig(param_redactor=noop_redactor) != SentryConfig()


def test_instrument_server_sentry_documents_when_to_call_it() -> None:
    """S32: the docstring says to call it before serving and that it is not thread-safe during dispatch."""
    doc = inspect.getdoc(instrument_server_sentry) or ""
    assert "before the server starts serving" in doc
    assert "not thread-safe during dispatch" in doc
    sig = inspect.signature(instrument_server_sentry)
    assert list(sig.parameters) == ["server", "config"]
    assert sig.parameters["config"].default is None


def test_public_redactors_are_documented() -> None:
    """S23: the default redactor and noop_redactor are public and say what they match."""
    assert "password|token|secret|key|authorization" in (default_redactor.__doc__ or "")
    assert "disable" in (noop_redactor.__doc__ or "")
