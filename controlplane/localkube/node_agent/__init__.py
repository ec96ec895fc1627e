"""The localkube node agent: a stand-in for the kubelet where no container runtime exists.

DEV AND TEST TOOLING ONLY. It registers one Node and runs the Pods bound to it whose image is this
project's own image (repository ``queuejob``, any tag or registry prefix) as plain local
processes: argv = (command or ``["queuejob"]``) + args, a bare executable resolved first next to
the agent's Python (``<venv>/bin``), then on PATH. It provides no isolation, no image, no volumes,
no probes and no resource limits. On kind (or any real cluster) the real kubelet runs the real
container image instead; nothing in the project may rely on this agent's shortcuts.

What it guarantees:
- one Node (generous capacity) that stays Ready: Lease renewed every 10 s, Ready condition
  heartbeat every 30 s, the ``node.kubernetes.io/not-ready`` taint removed (there is no
  node-lifecycle controller, see ``localkube.components``);
- a pod's environment: the pod's literal values, ``secretKeyRef``/``configMapKeyRef`` (and
  ``envFrom``) resolved through the API, ``fieldRef`` (metadata.name/namespace/uid/labels/
  annotations, spec.nodeName/serviceAccountName, status.podIP/hostIP), ``$(VAR)`` expansion in
  command/args, plus PATH/HOME/LANG from the agent, ``HOSTNAME`` = pod name and
  ``PYTHONUNBUFFERED=1``;
- status through the ``status`` subresource: phase Pending -> Running -> Succeeded/Failed,
  container states with exit codes and restart counts; ``restartPolicy`` Never/OnFailure/Always
  (restarts back off 1 s, 2 s, 4 s ... capped at 10 s);
- logs: one file per container, ``<state_dir>/pods/<namespace>/<pod>/<container>.log``
  (see ``localkube.podlogs``);
- deletion: SIGTERM to the process group, SIGKILL after the pod's grace period, then the Pod
  object is finalized (deleted with ``gracePeriodSeconds=0``), like a kubelet does;
- a Pod with any other image stays Pending, with a Warning Event ``UnsupportedImage`` and a
  waiting container state saying why.

Client library: pykube-ng (its ``HTTPClient`` for kubeconfig parsing and the authenticated
``requests`` session) with plain REST paths. The agent works on raw Pod JSON (it merge-patches
status and reads arbitrary fields), so dict-in/dict-out is simpler and lighter than the typed
models of the official client; a watch is a streamed GET whose lines are JSON events.
"""
