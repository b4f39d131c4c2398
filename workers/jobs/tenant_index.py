"""Each tenant's own job index, built once for the jobs accepted before there was one.

``accept.lua`` lists every new job both in the job index and in its tenant's
(``JobStatusStore.tenant_index_key``), so a tenant's listing reads its own jobs only, however many
other tenants' there are. Jobs accepted before that were only in the job index; the reconciler
runs ``backfill_tenant_indexes`` on its first pass, a bounded page per script run, and a marker
key says it is done, so it runs once per namespace. ZADD and SADD make a page safe to run again,
by a reconciler that died midway or beside accepts of new jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from queue_config.tenants import OPERATOR_TENANT
from workers.jobs.record import JobStatusStore

#: Index entries looked at per script run.
PAGE_SIZE = 500

_BACKFILL_LUA = (Path(__file__).parent / "tenant_backfill.lua").read_text()


def backfilled_key(status: JobStatusStore) -> str:
    """Set once every job of the namespace is in its tenant's index."""
    return f"{status.tenants_key}:backfilled"


def backfill_tenant_indexes(status: JobStatusStore, *, page_size: int = PAGE_SIZE) -> int | None:
    """List in their tenants' indexes the jobs accepted before those existed; the number of index
    entries looked at, or None when that was done already."""
    if status.client.exists(backfilled_key(status)):
        return None
    backfill = status.client.register_script(_BACKFILL_LUA)
    offset = 0
    while True:
        looked_at = int(cast(int, backfill(keys=[status.index_key, status.tenants_key],
                                           args=[status.namespace, offset, page_size, OPERATOR_TENANT,
                                                 status.tenant_index_prefix])))
        offset += looked_at
        if looked_at < page_size:
            status.client.set(backfilled_key(status), offset)
            return offset
