"""A worker process for the crash tests (not a test module).

Usage: python wq_crash_worker.py URL QUEUE WORKER_ID BATCH WORK_SECONDS LOG_FILE

Leases BATCH items at a time, "works" WORK_SECONDS per item, completes each item (or fails it
when the item starts with "poison"), and appends one line per event to LOG_FILE:
``start ITEM TOKEN ATTEMPT``, ``done ITEM TOKEN``, ``stale ITEM TOKEN``, ``failed ITEM TOKEN``,
``uncertain ITEM TOKEN`` (the acknowledgement's connection broke: it may or may not have run),
each followed by the time.time() of the event.
URL may be ``redis+cluster://``; Redis outages (failover) are waited out. Exits when the queue is
done.
"""

from __future__ import annotations

import sys
import time

from workqueue.connect import client_from_url
from workqueue.errors import QueueUnavailableError, StaleLeaseError
from workqueue.redisqueue import LeaseQueue


def stamp() -> str:
    return f" {time.time():.6f}"


def main() -> None:
    url, name, worker, batch, work, log_path = sys.argv[1:7]
    client = client_from_url(url, decode_responses=True, socket_timeout=2.0)
    wait = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    queue = LeaseQueue(client, name, wait_replicas=wait)
    with open(log_path, "a", buffering=1) as log:
        while True:
            try:
                leases = queue.lease(worker, int(batch), timeout=0.3)
                if not leases:
                    if queue.done():
                        return
                    continue
            except QueueUnavailableError:
                time.sleep(0.1)
                continue
            for lease in leases:
                log.write(f"start {lease.item} {lease.token} {lease.attempt}{stamp()}\n")
                time.sleep(float(work))
                try:
                    if lease.item.startswith("poison"):
                        queue.fail(lease, f"poison item failed on attempt {lease.attempt}")
                        log.write(f"failed {lease.item} {lease.token}{stamp()}\n")
                    else:
                        queue.complete(lease)
                        log.write(f"done {lease.item} {lease.token}{stamp()}\n")
                except StaleLeaseError:
                    log.write(f"stale {lease.item} {lease.token}{stamp()}\n")
                except QueueUnavailableError:
                    log.write(f"uncertain {lease.item} {lease.token}{stamp()}\n")


if __name__ == "__main__":
    main()
