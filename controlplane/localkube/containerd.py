"""containerd for the real node: its own config, root, state, socket and CNI configuration.

Debian's containerd 1.6 (with runc) is used as installed; Kubernetes 1.35 is the last release
whose kubelet supports containerd 1.x (1.36 requires 2.x), see controlplane/localkube/README.md.

Guarantees:

- nothing is shared with another containerd on the machine (Docker's, say): the root, state,
  gRPC socket, runc root (:class:`ContainerdLayout`) and CNI directories are all under the cluster's
  state directory; only containerd 1.6's shim sockets live in the fixed ``/run/containerd/s``
  directory, named by a hash that includes our own socket address;
- the CRI plugin runs pods with runc (cgroupfs driver, no systemd), the sandbox image
  :data:`PAUSE_IMAGE` (imported from the locally built pause program, never pulled) and the CNI
  bridge network of :mod:`localkube.hostnet`, rendered by containerd from :func:`cni_template`
  once the kubelet hands it the node's podCIDR;
- no container gets an ``oom_score_adj`` below containerd's own (``restrict_oom_score_adj``):
  lowering it needs CAP_SYS_RESOURCE, which root in a container or a sandboxed VM (this
  project's CI) may lack, and runc then fails every pod sandbox (the kubelet asks -998 for them);
- :func:`import_image` loads an image archive (OCI layout or ``docker save``) into the
  ``k8s.io`` namespace, where the kubelet finds it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localkube import hostnet
from localkube.oci_archive import File, ImageSpec, write_oci_archive

PAUSE_IMAGE = "localhost/localkube/pause:1"
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
NAMESPACE = "k8s.io"
NETWORK_NAME = "localkube"
#: Snapshotters and tracing plugins that only log errors on a machine without them.
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


@dataclass(frozen=True)
class ContainerdLayout:
    """Where one cluster's containerd keeps everything."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def cni_template(self) -> Path:
        return self.base / "cni" / "template.conflist"

    @property
    def ipam_dir(self) -> Path:
        return self.base / "cni" / "ipam"


def missing_host_tools() -> list[str]:
    """What the real node needs from the host and cannot find (empty: all there)."""
    missing = [
        tool for tool in ("containerd", "runc", "ctr", "ip", "iptables") if not shutil.which(tool)
    ]
    missing += [str(CNI_BIN_DIR / p) for p in CNI_PLUGINS if not (CNI_BIN_DIR / p).is_file()]
    return missing


def version() -> str:
    """``containerd --version``, e.g. "containerd github.com/containerd/containerd 1.6.20~ds1"."""
    return subprocess.run(
        ["containerd", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _toml_string(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_toml(layout: ContainerdLayout) -> str:
    """containerd's configuration (version 2 schema, as containerd 1.6 reads it)."""
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    runc = shutil.which("runc") or "runc"
    disabled = ", ".join(_toml_string(p) for p in DISABLED_PLUGINS)
    return f"""\
# Written by localkube for this cluster only; regenerated on every start.
version = 2
root = {_toml_string(layout.root)}
state = {_toml_string(layout.state)}
disabled_plugins = [{disabled}]

[grpc]
  address = {_toml_string(layout.socket)}

[metrics]
  address = ""

{cri}]
  sandbox_image = {_toml_string(PAUSE_IMAGE)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  BinaryName = {_toml_string(runc)}
  Root = {_toml_string(layout.runc_root)}
  SystemdCgroup = false

{cri}.cni]
  bin_dir = {_toml_string(CNI_BIN_DIR)}
  conf_dir = {_toml_string(layout.cni_conf_dir)}
  conf_template = {_toml_string(layout.cni_template)}
  max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_string(layout.base / "opt")}
"""


def cni_template(layout: ContainerdLayout) -> str:
    """The CNI network (a Go template: containerd fills in ``{{.PodCIDR}}``).

    One bridge, :data:`localkube.hostnet.BRIDGE`, is the pods' gateway; no IP masquerade (pods
    only talk to this machine, see :mod:`localkube.hostnet`); IP leases are kept under our state.
    """
    network = {
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": hostnet.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.ipam_dir),
                },
            }
        ],
    }
    return json.dumps(network, indent=2) + "\n"


def write_config(layout: ContainerdLayout) -> None:
    """Create the directories and write config.toml and the CNI template."""
    for directory in (
        layout.root,
        layout.state,
        layout.runc_root,
        layout.cni_conf_dir,
        layout.ipam_dir,
    ):
        directory.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(config_toml(layout))
    layout.cni_template.write_text(cni_template(layout))


def argv(layout: ContainerdLayout) -> list[str]:
    return ["containerd", "--config", str(layout.config)]


def ctr(layout: ContainerdLayout, *args: str) -> list[str]:
    """A ``ctr`` command line against this containerd's ``k8s.io`` namespace."""
    return ["ctr", "--address", str(layout.socket), "--namespace", NAMESPACE, *args]


def ready(layout: ContainerdLayout) -> bool:
    """True once containerd of ``layout`` answers on its socket (``ctr version`` succeeds)."""
    if not layout.socket.exists():
        return False
    probe = subprocess.run(ctr(layout, "version"), capture_output=True, check=False, timeout=10)
    return probe.returncode == 0


def import_image(layout: ContainerdLayout, archive: Path) -> None:
    """Load an image archive into the ``k8s.io`` namespace (unpacked for overlayfs)."""
    result = subprocess.run(
        ctr(layout, "images", "import", str(archive)),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ctr images import {archive} failed: {result.stderr.strip()}")


def image_names(layout: ContainerdLayout) -> list[str]:
    """The image references this containerd holds in ``k8s.io``."""
    result = subprocess.run(
        ctr(layout, "images", "list", "--quiet"), capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def write_pause_archive(pause_binary: Path, archive: Path) -> None:
    """The sandbox image :data:`PAUSE_IMAGE`: the static pause program as ``/pause``."""
    spec = ImageSpec(
        name=PAUSE_IMAGE,
        files={"/pause": File(pause_binary.read_bytes(), 0o755)},
        entrypoint=("/pause",),
        user="65535:65535",
    )
    write_oci_archive(spec, archive)
