"""``kubectl queuejob``: operate QueueJobs from kubectl (a kubectl plugin, ``kubectl-queuejob``).

Reads come from the QueueJob's status (counts, conditions, ``status.leases``,
``status.deadLetters``), its Events and its worker pods' logs. Changes (redrive, add) go through
the Kubernetes API as a request the operator carries out (``queuejob.operate``), so Kubernetes
RBAC on the QueueJob decides who may change its queue; the plugin never talks to Redis.
"""
