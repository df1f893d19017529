"""Against a real Portainer, when one is configured: PHOENIX_PORTAINER_URL, PHOENIX_PORTAINER_TOKEN_FILE (an API
key, 0600) and PHOENIX_PORTAINER_PASSWORD_FILE (the admin password, 0600: it makes the key records are signed with), with PHOENIX_PORTAINER_CA_FILE or PHOENIX_PORTAINER_FINGERPRINT; PHOENIX_PORTAINER_ENDPOINT (an
environment id) lets the test deploy and remove a throwaway stack there."""

from __future__ import annotations

import os
import secrets

import pytest

from phoenix.portainer import record
from phoenix.portainer.client import Portainer
from phoenix.portainer.listing import OK, read
from phoenix.portainer.owner import key_of
from phoenix.portainer.target import PortainerTarget
from phoenix.pve.counters import Counters

LIVE = all(os.environ.get(f"PHOENIX_PORTAINER_{k}") for k in ("URL", "TOKEN_FILE", "PASSWORD_FILE"))
pytestmark = [pytest.mark.live,
              pytest.mark.skipif(not LIVE, reason="no real Portainer configured (PHOENIX_PORTAINER_URL, _TOKEN_FILE, "
                                                  "_PASSWORD_FILE)")]


@pytest.fixture
def target() -> PortainerTarget:
    env = os.environ
    return PortainerTarget(env["PHOENIX_PORTAINER_URL"], env["PHOENIX_PORTAINER_TOKEN_FILE"],
                           env.get("PHOENIX_PORTAINER_CA_FILE") or True, env.get("PHOENIX_PORTAINER_FINGERPRINT") or None,
                           password_file=env["PHOENIX_PORTAINER_PASSWORD_FILE"])


def client(target: PortainerTarget, counters: Counters) -> Portainer:
    from phoenix.portainer.listing import token

    return Portainer(target.url, key=token(target), verify=target.verify, fingerprint=target.fingerprint,
                     counters=counters)


def test_the_listing_is_one_request_and_every_stack_parses(target: PortainerTarget) -> None:
    counters = Counters()
    listing = read(target, counters)
    assert listing.state == OK and counters.total == 1
    assert all(s.stack_id > 0 and s.endpoint > 0 for s in listing.stacks)


def test_a_stack_is_created_found_by_its_record_updated_and_removed(target: PortainerTarget) -> None:
    endpoint = int(os.environ.get("PHOENIX_PORTAINER_ENDPOINT") or 0)
    if not endpoint:
        pytest.skip("PHOENIX_PORTAINER_ENDPOINT names no environment to deploy a throwaway stack to")
    counters = Counters()
    c = client(target, counters)
    name = f"phoenix-live-{secrets.token_hex(3)}"
    env = record.EnvFacts("live", "live", endpoint)
    mark = record.make(name=name, guest=0, identity="a" * 16, build="b" * 12, parent_build=None, inputs={"compose": "x"},
                       env=env, key=key_of(target.password_file))
    compose = "services:\n  hello:\n    image: busybox:1.37\n    command: [\"sleep\", \"60\"]\n"
    made = c.create_stack(endpoint, name, compose, [mark])
    try:
        found = [s for s in read(target, counters).stacks if s.stack_id == made["Id"]]
        assert len(found) == 1 and found[0].phoenix and found[0].identity == "a" * 16 and found[0].name == name
        c.update_stack(made["Id"], endpoint, compose, [mark], False)
    finally:
        c.delete_stack(made["Id"], endpoint)
    assert not [s for s in read(target, counters).stacks if s.stack_id == made["Id"]]
