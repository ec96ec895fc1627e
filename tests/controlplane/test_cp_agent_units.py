"""Pure functions of the node agent (no cluster): image matching, $(VAR) expansion, argv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from localkube.node_agent.env import container_argv, expand
from localkube.node_agent.images import is_runnable, repository_name


@pytest.mark.parametrize(
    ("image", "runnable"),
    [
        ("queuejob:dev", True),
        ("queuejob", True),
        ("localhost/queuejob:dev", True),
        ("docker.io/library/queuejob:1.2", True),
        ("localhost:5000/queuejob@sha256:0123", True),
        ("queuejob-other:dev", False),
        ("nginx:1.27", False),
        ("queuejob/nginx:dev", False),
        ("", False),
    ],
)
def test_cp_agent_runs_only_our_image(image: str, runnable: bool) -> None:
    assert is_runnable(image) is runnable


def test_cp_agent_repository_name_strips_registry_tag_and_digest() -> None:
    assert repository_name("registry.example:443/team/queuejob:v1@sha256:ab") == "queuejob"


def test_cp_agent_expands_kubernetes_variable_references() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("plain $A", env) == "plain $A"


def test_cp_agent_argv_defaults_to_queuejob_and_resolves_executables() -> None:
    env = {"PATH": "/usr/bin:/bin", "ITEM": "x"}
    argv = container_argv({"args": ["worker", "--item=$(ITEM)"]}, env)
    assert Path(argv[0]).name == "queuejob"
    assert argv[1:] == ["worker", "--item=x"]
    python = container_argv({"command": ["python3", "-c", "pass"]}, env)
    assert python[0] == str(Path(sys.executable).parent / "python3")
    shell = container_argv({"command": ["sh", "-c", "true"]}, env)
    assert shell[0] in ("/usr/bin/sh", "/bin/sh")
