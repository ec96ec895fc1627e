"""The QueueJob demo (``make demo``): the operator end to end on the local control plane.

Development tooling, not part of the product: it drives ``localkube`` (the local control plane)
and runs ``queuejob operator`` as a local process. The runtime packages (``queuejob``,
``workqueue``) never import it, and it is not in the container image.
"""
