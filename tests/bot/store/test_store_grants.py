"""Grants: an approval binds to the exact head sha; a push, a revoke or another PR finds none."""

from __future__ import annotations

import pytest

from bot.store import Store, StoreError

from .helpers import at

SHA1, SHA2 = "1" * 40, "2" * 40


async def test_grant_is_bound_to_the_sha(store: Store) -> None:
    g = await store.grant("octo/demo", 7, SHA1, "maintainer", {"commands": ["train", "eval"], "args": "tiny"},
                          now=at(0))
    assert g.scope == {"commands": ["train", "eval"], "args": "tiny"} and g.created_at == at(0)
    assert await store.grant_for("octo/demo", 7, SHA1) == g
    assert await store.grant_for("octo/demo", 7, SHA2) is None  # the author pushed: the approval is void
    assert await store.grant_for("octo/demo", 8, SHA1) is None
    assert await store.grant_for("octo/other", 7, SHA1) is None


async def test_newest_grant_wins_and_revocation_voids_all(store: Store) -> None:
    await store.grant("octo/demo", 7, SHA1, "m1", {"commands": ["eval"]}, now=at(0))
    newer = await store.grant("octo/demo", 7, SHA1, "m2", {"commands": ["train"]}, now=at(5))
    assert await store.grant_for("octo/demo", 7, SHA1) == newer
    await store.grant("octo/demo", 8, SHA1, "m1", now=at(6))
    assert await store.revoke_grants("octo/demo", 7, now=at(10)) == 2
    assert await store.revoke_grants("octo/demo", 7, now=at(11)) == 0
    assert await store.grant_for("octo/demo", 7, SHA1) is None
    kept = await store.grant_for("octo/demo", 8, SHA1)
    assert kept is not None and kept.scope == {} and kept.revoked_at is None


async def test_bad_grant_input(store: Store) -> None:
    with pytest.raises(StoreError, match="head_sha: must be a non-empty"):
        await store.grant("octo/demo", 7, "", "m", now=at(0))
    with pytest.raises(StoreError, match="grant scope: expected a JSON object"):
        await store.grant("octo/demo", 7, SHA1, "m", ["train"], now=at(0))  # type: ignore[arg-type]
