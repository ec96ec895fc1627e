"""queuejob-redis:dev runs as manifests/deploy/redis.yaml runs Redis.

The image built here from Debian's redis-server (``make redis-image``) is started by Docker with
the Redis container's exact command, args and env from the rendered manifests (the password
from the Secret handed over as the manifest does), its pod's and container's securityContext as
Docker flags (uid/gid 999, fsGroup 999, read-only root, no capabilities) and a fresh tmpfs
standing in for the PersistentVolumeClaim at /data. Then the manifest's own probe command must
pass, the password must be required, and append-only persistence must write into /data.
"""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
from mf_docker import Images, docker, security_flags, volume_flags
from mf_support import container_env, render_deploy

pytestmark = [pytest.mark.timeout(300)]


def test_redis_image_runs_the_deploy_manifest(images: Images, cluster: object) -> None:
    docs = render_deploy(cluster)
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "redis"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    password = secrets.token_hex(12)
    env = container_env(container, {"redis-auth/password": password})
    env_flags = [flag for key, value in env.items() for flag in ("--env", f"{key}={value}")]
    name = f"qj-redis-{uuid.uuid4().hex[:8]}"
    command = container["command"]
    docker(
        "run", "--detach", "--name", name, "--network", "none",
        *security_flags(pod, container), *volume_flags(pod, container, claims=True),
        *env_flags, "--entrypoint", command[0], images.redis, *command[1:], *container["args"],
    )  # fmt: skip
    try:
        probe = container["readinessProbe"]["exec"]["command"]
        deadline = time.monotonic() + 60
        ready = docker("exec", name, *probe, check=False)
        while ready.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = docker("exec", name, *probe, check=False)
        logs = docker("logs", name, check=False)
        assert ready.returncode == 0, f"probe {probe} failed:\n{logs.stdout}{logs.stderr}"
        assert docker("exec", name, "id", "-u").stdout.strip() == "999"

        anonymous = docker(
            "exec", "--env", "REDISCLI_AUTH=", name, "redis-cli", "ping", check=False
        )
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr, anonymous
        cli = ("exec", name, "redis-cli", "--no-auth-warning")
        assert docker(*cli, "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]
        assert docker(*cli, "set", "k", "v").stdout.strip() == "OK"
        files = docker("exec", name, "sh", "-c", "sleep 1.2; ls -R /data").stdout
        assert "appendonly" in files, files
    finally:
        docker("rm", "--force", name, check=False)
