"""Gateway settings: API keys are tenant:key pairs, and a gateway with none refuses to start."""

from __future__ import annotations

import pytest

from services.gateway.settings import parse_api_keys


def test_keys_map_to_their_tenants() -> None:
    assert parse_api_keys("acme:k1, globex:k2") == {"k1": "acme", "k2": "globex"}


@pytest.mark.parametrize("raw", ["", " ", ",", " , "])
def test_no_key_at_all_is_refused_with_a_message_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="API_KEYS is empty"):
        parse_api_keys(raw)


@pytest.mark.parametrize("raw", ["acme", "acme:", ":key", "bad tenant:key"])
def test_a_malformed_entry_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="tenant:key pairs"):
        parse_api_keys(raw)
