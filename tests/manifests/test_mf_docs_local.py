"""The docs of the local setup match it: every setting it reads is documented, and no command in
the docs uses a fixed log file under /tmp or a fixed port, which collide on a shared machine.

The settings are found in the code (``os.environ.get("LOCALKUBE_...")`` in controlplane/), so a
new one without documentation fails here. ``LOCALKUBE_CLUSTER_ID`` is not a setting: it is the
marker localkube puts on the processes it starts.
"""

from __future__ import annotations

import re

from mf_support import REPO

PAGES = {
    path: path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
}
CODE = "\n".join(p.read_text() for p in sorted((REPO / "controlplane").rglob("*.py")))
NOT_SETTINGS = {"LOCALKUBE_CLUSTER_ID"}


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S)


def test_every_localkube_setting_is_documented() -> None:
    read = set(re.findall(r"""environ(?:\.get)?[\[(]["'](LOCALKUBE_[A-Z_]+)["']""", CODE))
    assert "LOCALKUBE_STATE_DIR" in read, "the search for settings found nothing"
    everything = "\n".join(PAGES.values())
    missing = sorted(name for name in read - NOT_SETTINGS if f"`{name}" not in everything)
    assert missing == [], f"settings of the local control plane in no doc: {missing}"


def test_no_doc_command_uses_a_fixed_tmp_file_or_port() -> None:
    found = []
    for path, text in PAGES.items():
        for block in _shell_blocks(text):
            for line in block.splitlines():
                command = line.split("#", 1)[0]
                if re.search(r">>?\s*/tmp/", command) or re.search(
                    r"127\.0\.0\.1:\d{2,5}", command
                ):
                    found.append(f"{path.relative_to(REPO)}: {line.strip()}")
    assert found == [], "commands with fixed /tmp files or ports:\n" + "\n".join(found)


def test_the_readme_tries_it_by_hand_with_the_playground() -> None:
    readme = PAGES[REPO / "README.md"]
    blocks = "\n".join(_shell_blocks(readme))
    for command in ("make dev-up", 'eval "$(make dev-env)"', "make dev-down"):
        assert command in blocks, f"README's shell examples lack {command!r}"
