"""The verified-key cache is state of a Database, not of the process: each Database (an app's,
a CLI command's, a test's) remembers only what it verified, and forgets a key it revokes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voucherd.auth.service import authenticate_token, create_key, revoke_key
from voucherd.db.engine import Database
from voucherd.errors import Unauthorized
from voucherd.tenants.service import create_tenant


class TestKeyCache:
    def test_each_database_remembers_only_what_it_verified(
        self, fresh_database: Callable[..., Database]
    ) -> None:
        fresh = fresh_database(pool_size=2)
        cached = fresh.settings.model_copy(update={"key_cache_seconds": 60})
        serving = Database(fresh.engine, settings=cached)
        operator = Database(fresh.engine, settings=cached)
        create_tenant(serving, "acme")
        key = create_key(serving, "acme")
        assert authenticate_token(serving, key.token).key_id == key.key_id
        assert authenticate_token(operator, key.token).key_id == key.key_id

        revoke_key(operator, key.key_id)

        # The Database that revoked forgets at once, and one that never saw the key asks the
        # table; the one that verified it keeps it for its TTL, as another process would.
        with pytest.raises(Unauthorized):
            authenticate_token(operator, key.token)
        with pytest.raises(Unauthorized):
            authenticate_token(Database(fresh.engine, settings=cached), key.token)
        assert authenticate_token(serving, key.token).key_id == key.key_id

    def test_a_wrong_secret_is_refused_even_when_the_key_is_cached(
        self, fresh_database: Callable[..., Database]
    ) -> None:
        fresh = fresh_database(pool_size=2)
        db = Database(
            fresh.engine, settings=fresh.settings.model_copy(update={"key_cache_seconds": 60})
        )
        create_tenant(db, "acme")
        key = create_key(db, "acme")
        authenticate_token(db, key.token)
        with pytest.raises(Unauthorized):
            authenticate_token(db, f"{key.key_id}.{'x' * len(key.secret)}")
