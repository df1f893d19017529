"""The Portainer agent app script (portainer:env@ID on a guest that is not the server), with a stand-in docker: it
starts the agent once, keeps it while nothing changes, replaces it when its port changes, pulls no image that is
present, and fails when the agent does not answer."""

from __future__ import annotations

from pathlib import Path

AGENT = "apps/portainer_agent.sh"


def context(port: int = 9001) -> dict:
    return {"portainer_agent_version": "2.33.5", "portainer_agent_port": port}


def test_the_agent_is_started_once_and_replaced_when_its_port_changes(shell, fakebin, tmp_path: Path) -> None:
    first = shell.run(AGENT, "main", context=context(), env=fakebin.env)
    assert "created container portainer_agent (portainer/agent:2.33.5, port 9001)" in first.stdout
    runs = [c for c in fakebin.calls() if c.startswith("docker run ")]
    assert len(runs) == 1 and "-p 9001:9001" in runs[0] and "-v /var/run/docker.sock:/var/run/docker.sock" in runs[0]
    assert not [c for c in fakebin.calls() if c.startswith("docker pull")]  # the image is there: not pulled
    assert any(c.startswith("curl -kfsS -o /dev/null https://127.0.0.1:9001/ping") for c in fakebin.calls())

    second = shell.run(AGENT, "main", context=context(), env=fakebin.env)
    assert "container portainer_agent runs portainer/agent:2.33.5 on port 9001" in second.stdout
    assert len([c for c in fakebin.calls() if c.startswith("docker run ")]) == 1

    third = shell.run(AGENT, "main", context=context(9002), env=fakebin.env)
    assert "removed container portainer_agent (its settings changed)" in third.stdout
    assert "-p 9002:9001" in [c for c in fakebin.calls() if c.startswith("docker run ")][-1]


def test_an_agent_that_does_not_answer_fails_the_environment(shell, fakebin) -> None:
    (fakebin.dir / "curl").write_text("#!/bin/sh\nexit 7\n")
    r = shell.run(AGENT, "PHX_WAIT_TIMEOUT=1 main", context=context(), env={**fakebin.env, "PHX_PORTAINER_WAIT_S": "1"},
                  check=False)
    assert r.returncode != 0 and "the Portainer agent does not answer on https://127.0.0.1:9001/ping" in r.stderr + r.stdout


def test_no_docker_daemon_is_an_error(shell, fakebin) -> None:
    (fakebin.dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    r = shell.run(AGENT, "main", context=context(), env=fakebin.env, check=False)
    assert r.returncode != 0 and "the docker daemon is not running on this guest" in r.stderr + r.stdout
