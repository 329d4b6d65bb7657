"""Who Flower's revoke is signed by, and the route that signs it."""

from __future__ import annotations

import base64

import pytest
from flower import urls

from jobengine import flower_app


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "current_user", "user"),
    [
        (basic("ops:pa:ss"), True, "ops"),  # a password may hold colons; the login may not
        ("", "alice@example.org", "alice@example.org"),  # Flower's OAuth user
        ("", True, flower_app.ANONYMOUS),  # FLOWER_UNAUTHENTICATED_API, no login
        ("Basic not-base64!", None, flower_app.ANONYMOUS),
        ("Bearer abc", "bob", "bob"),
    ],
)
def test_the_revoke_is_signed_by_the_login_else_the_oauth_user_else_anonymous(
    authorization: str, current_user: object, user: str
) -> None:
    assert flower_app.flower_user(authorization, current_user) == user


def test_install_routes_flowers_revoke_to_the_attributing_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(urls, "handlers", list(urls.handlers))
    flower_app.install()
    routed = [h for h in urls.handlers if isinstance(h, tuple) and h[0] == flower_app.REVOKE_ROUTE]
    assert [h[1] for h in routed] == [flower_app.AttributedTaskRevoke]


def test_install_refuses_a_flower_without_the_revoke_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urls, "handlers", [])
    with pytest.raises(RuntimeError, match="no route"):
        flower_app.install()
