"""Which images the node agent can run: this project's own image, whatever the tag or registry."""

from __future__ import annotations

OUR_REPOSITORY = "queuejob"


def repository_name(image: str) -> str:
    """Last path component of the image's repository, without tag or digest.

    >>> repository_name("docker.io/library/queuejob:dev")
    'queuejob'
    >>> repository_name("localhost:5000/queuejob@sha256:abc")
    'queuejob'
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_runnable(image: str | None) -> bool:
    """True when the node agent runs this image as a local process."""
    return bool(image) and repository_name(image or "") == OUR_REPOSITORY
