"""Hostile batch uploads over HTTP: each is a 4xx naming the line and the reason, never a 500, never an echo.

One API (uvicorn on loopback, the session's Redis) serves every case on a namespace no worker serves;
after each refusal the same API still takes a good upload.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from queue_config.settings import Settings
from tests.api.test_batches_api import upload
from tests.api.test_jobs_api import TOKEN, api_server, client_of
from tests.api.test_ops import Namespace, cleaned_namespace

#: Planted in what the client sends; no answer may repeat it.
CANARY = "sk-live-CANARY"
GOOD = json.dumps({"prompt": "a fox", "width": 64, "height": 64}).encode() + b"\n"
NESTED = b'{"prompt": ' + b"[" * 100_000 + CANARY.encode() + b"]" * 100_000 + b"}\n"


@pytest.fixture(scope="module")
def hostile_api(settings: Settings) -> Iterator[tuple[Namespace, httpx.Client]]:
    for ns in cleaned_namespace(settings, "batch-hostile"):
        served = ns.settings.model_copy(update={"api_token": TOKEN, "api_request_burst": 1000})  # ~30 uploads at once
        with api_server(served) as url, client_of(url) as client:
            yield ns, client


def submitted(ns: Namespace) -> tuple[int, int]:
    """How many batches and jobs the namespace has records of."""
    client = ns.status.client
    return client.zcard(f"{ns.settings.namespace}:batches"), client.zcard(ns.status.index_key)  # type: ignore[return-value]


def named_line(body: dict[str, Any]) -> tuple[int, str]:
    """(line, reason) of a refusal: the whole file's (``line``, ``detail``) or its first rejected line's."""
    if "line" in body:
        return body["line"], body["detail"]
    first = body["rejected"][0]
    return first["line"], first["error"]


@pytest.mark.parametrize(("data", "form", "line", "reason"), [
    pytest.param(NESTED, {}, 1, "not JSON: depth limit exceeded", id="nested-100000-deep"),
    pytest.param(GOOD + NESTED, {"strict": "true"}, 2, "not JSON: depth limit exceeded", id="nested-strict"),
    pytest.param(GOOD + b'{"prompt": "a", "seed": ' + b"9" * 5000 + b"}\n", {"strict": "true"}, 2,
                 "not JSON: number is infinity", id="5000-digit-number"),
    pytest.param(b"prompt,seed\na fox,1\n" + CANARY.encode() * 20_000 + b",2\n", {"format": "csv"}, 3,
                 f"a cell is over {csv.field_size_limit()} characters", id="huge-csv-cell"),
    pytest.param(GOOD + b'{"prompt": "\xff' + CANARY.encode() + b'"}\n', {}, 2, "not UTF-8 text", id="not-utf8"),
    pytest.param(f'{{"prompt": "{CANARY}"}}\n'.encode("utf-16"), {}, 1, "not UTF-8 text but UTF-16", id="utf16"),
    pytest.param(GOOD + b"\xef\xbb\xbf" + GOOD, {"strict": "true"}, 2, "the line starts with a byte-order mark",
                 id="bom-mid-file"),
    pytest.param(GOOD + b'{"prompt": "' + CANARY.encode() + b'\x00"}\n', {"strict": "true"}, 2,
                 "a NUL character at column", id="nul"),
    pytest.param(f"prompt,seed,{CANARY}\na,1,b\n".encode(), {"format": "csv"}, 1,
                 "the CSV header is wrong: unknown column 3", id="unknown-csv-column"),
    pytest.param(GOOD + f'{{"prompt": "a", "{CANARY}": 1}}\n'.encode(), {"strict": "true"}, 2,
                 "unknown key 2", id="unknown-json-key"),
    pytest.param(b"", {}, 1, "the file is empty", id="empty"),
    pytest.param(b"\n\r\n  \n", {}, 1, "the file is empty (only blank lines)", id="only-blank-lines"),
])
def test_a_hostile_upload_is_a_4xx_naming_the_line_and_the_reason_and_a_good_one_still_goes_through(
    hostile_api: tuple[Namespace, httpx.Client], data: bytes, form: dict[str, str], line: int, reason: str
) -> None:
    ns, client = hostile_api
    before = submitted(ns)

    refused = upload(client, data, filename="night.jsonl", **form)
    after_refusal = submitted(ns)
    good = upload(client, GOOD, filename="good.jsonl")

    assert refused.status_code in (400, 413, 422), refused.text[:500]
    assert named_line(refused.json())[0] == line and named_line(refused.json())[1].startswith(reason), refused.text
    assert CANARY not in refused.text and len(refused.content) < 2000
    assert after_refusal == before  # nothing was submitted
    assert good.status_code == 202 and submitted(ns) >= (1, 1), good.text


def test_a_malformed_multipart_body_is_a_4xx_and_not_echoed(hostile_api: tuple[Namespace, httpx.Client]) -> None:
    _, client = hostile_api
    head = f'--XyZ\r\nContent-Disposition: form-data; name="{CANARY}"; filename="{CANARY}\xff.jsonl"\r\n\r\n'

    answers = [client.post("/v1/batches", content=body, headers={"content-type": "multipart/form-data; boundary=XyZ"})
               for body in (CANARY.encode(), head.encode("latin-1") + NESTED, b"--XyZ--\r\n")]

    assert [answer.status_code for answer in answers] == [422, 422, 422]
    assert not any(CANARY in answer.text for answer in answers)
