"""Shared pytest configuration: the fixture plugins of each area.

- ``fixtures.cluster``: the ``cluster`` fixture (``--cluster=local|kind|existing``)
  and ``namespace``.
- ``fixtures.redis``: a real ``redis-server`` on loopback with a password
  (``redis_server``, ``redis_client``).
- ``fixtures.operator``: the QueueJob operator running against ``cluster``
  (a local process, or deployed on kind).
- ``fixtures.realnode``: ``real_node``, a local control plane with a real kubelet + containerd
  node (root only), and its test image.
"""

pytest_plugins = ["fixtures.cluster", "fixtures.redis", "fixtures.operator", "fixtures.realnode"]
