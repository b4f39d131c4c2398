"""``framequeue tenants``: add, list, disable, enable and re-key the tenants that share the fleet.

``add`` and ``rotate-token`` print the tenant's token once, on stdout, with where to use it; it is
stored as its SHA-256 only, so it cannot be shown again (``rotate-token`` makes a new one). ``list``
never shows a token. Each change reaches the tenant's Redis user at once (``workers/tenants``).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from queue_config.jobs import Priority
from queue_config.settings import Settings
from queue_config.tenants import Tenant
from workers.cli.errors import EXIT_FAILURE, CliError, NotFound
from workers.cli.output import print_json, print_table
from workers.jobs.messages import describe_validation_error
from workers.jobs.record import JobStatusStore
from workers.tenants import RedisUsersRefused, TenantExists, Tenants, UnknownTenant, intake_stream, redis_user


def cmd_tenants(args: argparse.Namespace, settings: Settings) -> int:
    tenants = Tenants(JobStatusStore.from_settings(settings).client, settings.namespace)
    try:
        return int(ACTIONS[args.action](args, settings, tenants))
    except UnknownTenant as error:
        raise NotFound(str(error)) from None
    except TenantExists as error:
        raise CliError(str(error), EXIT_FAILURE) from None
    except RedisUsersRefused as error:
        hint = " (or add the tenant with --no-redis-user: the HTTP API only)" if args.action == "add" else ""
        raise CliError(f"{error}{hint}", EXIT_FAILURE) from None


def _add(args: argparse.Namespace, settings: Settings, tenants: Tenants) -> int:
    try:
        tenant = Tenant(id=args.tenant_id, description=args.description, weight=args.weight,
                        max_priority=Priority(args.max_priority))
    except ValidationError as error:
        raise CliError(describe_validation_error(error).removeprefix("invalid job: ")) from None
    token = tenants.add(tenant, redis_user=not args.no_redis_user)
    _print_token(settings, tenant.id, token, with_redis_user=not args.no_redis_user)
    return 0


def _set_enabled(args: argparse.Namespace, settings: Settings, tenants: Tenants) -> int:
    tenants.set_enabled(args.tenant_id, args.action == "enable")
    print(f"tenant {args.tenant_id}: {args.action}d")
    return 0


def _rotate(args: argparse.Namespace, settings: Settings, tenants: Tenants) -> int:
    token = tenants.rotate_token(args.tenant_id)
    _print_token(settings, args.tenant_id, token, with_redis_user=tenants.store.has_redis_user(args.tenant_id))
    return 0


def _list(args: argparse.Namespace, settings: Settings, tenants: Tenants) -> int:
    found = tenants.store.all()
    if args.json:
        print_json([tenant.model_dump(mode="json") for tenant in found])
        return 0
    print_table(["tenant", "enabled", "weight", "max priority", "quotas", "description"],
                ([tenant.id, "yes" if tenant.enabled else "no", f"{tenant.weight:g}", tenant.max_priority.value,
                  _quotas(tenant), tenant.description] for tenant in found), empty="no tenants yet")
    return 0


def _quotas(tenant: Tenant) -> str:
    set_ = tenant.quotas.model_dump(exclude_defaults=True)
    return ", ".join(f"{name}={value}" for name, value in set_.items()) or "none"


def _print_token(settings: Settings, tenant_id: str, token: str, *, with_redis_user: bool) -> None:
    print(f"tenant {tenant_id}: its token, shown this once (framequeue keeps only its hash):\n{token}")
    print("  HTTP API:  Authorization: Bearer <token>")
    if with_redis_user:
        print(f"  Redis:     user {redis_user(settings.namespace, tenant_id)}, password <token>; "
              f"XADD {intake_stream(settings.namespace, tenant_id)} * job '<json>'")


ACTIONS = {"add": _add, "list": _list, "disable": _set_enabled, "enable": _set_enabled, "rotate-token": _rotate}


def add_tenants_command(commands: Any) -> None:
    """Register ``tenants`` on the ``framequeue`` parser's subparsers."""
    tenants = commands.add_parser("tenants", help="manage the tenants sharing the fleet: their tokens, Redis users "
                                                  "and priority allowance")
    actions = tenants.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a tenant and print its token (once)")
    add.add_argument("tenant_id", metavar="ID", help="lower case letters, digits and '-', at most 32")
    add.add_argument("--weight", type=float, default=1.0, help="its share against other tenants' (default 1)")
    add.add_argument("--max-priority", choices=[p.value for p in Priority], default=Priority.interactive.value,
                     help="the highest priority its jobs may claim (default interactive)")
    add.add_argument("--description", default="", help="who or what it is")
    add.add_argument("--no-redis-user", action="store_true",
                     help="no Redis user nor intake stream of its own (for a Redis that refuses ACL SETUSER)")
    listing = actions.add_parser("list", help="every tenant and its settings (never a token)")
    listing.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")
    for action, what in [("disable", "refuse its token and its Redis user at once (closing its connections)"),
                         ("enable", "accept its token and Redis user again"),
                         ("rotate-token", "give it a new token (printed once); the old one stops at once")]:
        actions.add_parser(action, help=what).add_argument("tenant_id", metavar="ID", help="the tenant's id")
    tenants.set_defaults(handler=cmd_tenants)
