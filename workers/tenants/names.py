"""Where a tenant's things live in Redis: its intake stream, its receipts and its ACL user.

The operator's intake stream is ``{namespace}:intake`` with receipts under
``{namespace}:intake:receipt:``; a tenant's is ``{namespace}:intake:{id}`` with receipts under
``{namespace}:intake:{id}:receipt:``. A tenant id holds no ``:``, so no tenant's keys fall under
another's (``receipt`` is reserved, so no tenant stream is named like the operator's receipts).
"""

from __future__ import annotations

from typing import Final

from queue_config.tenants import OPERATOR_TENANT

#: Ids no tenant may take: the operator's own, and the word in the operator's receipt keys.
RESERVED_TENANT_IDS: Final = frozenset({OPERATOR_TENANT, "receipt"})


def intake_stream(namespace: str, tenant_id: str | None) -> str:
    """The intake stream a tenant writes to (the operator's shared one for None)."""
    return f"{namespace}:intake" if tenant_id is None else f"{namespace}:intake:{tenant_id}"


def receipt_prefix(namespace: str, tenant_id: str | None) -> str:
    """What a receipt's key is made of before the stream entry's id."""
    return f"{intake_stream(namespace, tenant_id)}:receipt:"


def redis_user(namespace: str, tenant_id: str) -> str:
    """The Redis ACL user a tenant writes to its stream as."""
    return f"{namespace}-tenant-{tenant_id}"
