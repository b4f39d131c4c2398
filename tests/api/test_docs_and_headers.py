"""/docs and /openapi.json behind the token and served offline; security headers on every response."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from queue_config.jobs import JobKind, JobSpec
from queue_config.settings import Settings
from queue_config.stages import stage_plan
from storage import open_store
from tests.api.test_dashboard import BROWSER_DIR, TOKEN, browser_ready, signed_in
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import Namespace, cleaned_namespace
from workers.api import create_app
from workers.api.security_headers import ARTIFACT_CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY
from workers.jobs.outcome import StageOutcome

BEARER = {"Authorization": f"Bearer {TOKEN}"}
#: What every response must carry, whatever answered it.
EVERYWHERE = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin", "x-frame-options": "DENY"}


@pytest.fixture(scope="module")
def served(settings: Settings) -> Iterator[tuple[Namespace, str]]:
    for ns in cleaned_namespace(settings, "headers"):
        app = create_app(ns.settings.model_copy(update={"api_token": TOKEN}))

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError("an unhandled error")

        with api_server(ns.settings, app) as url:
            yield ns, url


def test_docs_and_the_openapi_document_need_the_token(served: tuple[Namespace, str]) -> None:
    _, url = served
    anonymous = [httpx.get(f"{url}{path}") for path in ("/docs", "/openapi.json")]
    with_token = [httpx.get(f"{url}{path}", headers=BEARER) for path in ("/docs", "/openapi.json")]
    wrong_token = httpx.get(f"{url}/openapi.json", headers={"Authorization": "Bearer nope"})
    with signed_in(url) as browser:  # a signed-in operator's browser can open them (GETs only)
        from_session = [browser.get(path).status_code for path in ("/docs", "/openapi.json")]

    assert [r.status_code for r in anonymous] == [401, 401] and wrong_token.status_code == 401
    assert [r.status_code for r in with_token] == [200, 200] and from_session == [200, 200]
    assert "/v1/jobs" in with_token[1].json()["paths"] and "/dashboard" not in str(with_token[1].json()["paths"])
    assert httpx.get(f"{url}/redoc", headers=BEARER).status_code == 404


def test_the_docs_page_loads_swagger_ui_from_this_server_only(served: tuple[Namespace, str]) -> None:
    _, url = served
    page = httpx.get(f"{url}/docs", headers=BEARER).text
    references = re.findall(r'(?:src|href|data-openapi-url)="([^"]+)"', page)

    assert references and all(urlsplit(ref).netloc == "" and ref.startswith("/") for ref in references), references
    assert "<script>" not in page  # no inline script: the CSP would refuse it
    fetched = {ref: httpx.get(f"{url}{ref}", headers=BEARER) for ref in references}
    assert {ref: r.status_code for ref, r in fetched.items()} == dict.fromkeys(references, 200)
    assert "SwaggerUIBundle" in fetched["/docs/assets/swagger-ui-bundle.js"].text
    assert fetched["/docs/assets/swagger-ui.css"].headers["content-type"].startswith("text/css")
    assert httpx.get(f"{url}/docs/assets/..%2Fapp.py").status_code == 404


def test_a_setting_opens_the_docs_to_anyone(settings: Settings) -> None:
    for ns in cleaned_namespace(settings, "public-docs"):
        with api_server(ns.settings.model_copy(update={"api_token": TOKEN, "api_public_docs": True})) as url:
            answers = [httpx.get(f"{url}{path}").status_code for path in ("/docs", "/openapi.json")]
            api = httpx.get(f"{url}/v1/jobs").status_code

    assert answers == [200, 200] and api == 401


def stored_artifact(ns: Namespace, settings: Settings) -> str:
    """A job with an image artifact in the object store; its id."""
    spec = JobSpec(prompt="a lantern", kind=JobKind.image, width=64, height=64)
    ns.status.create(spec, stage_plan(spec.kind))
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "olive").save(png, "PNG")
    image = open_store(settings).put_content("images", png.getvalue(), "png", "image/png")
    ns.status.stage_finished(spec.id, "image", 0.5, StageOutcome(artifacts={"image": image}))
    return spec.id


def test_every_response_carries_the_security_headers(served: tuple[Namespace, str], settings: Settings) -> None:
    ns, url = served
    job_id = stored_artifact(ns, settings)
    with signed_in(url) as browser:
        responses = {
            "page": browser.get("/dashboard"), "login": browser.get("/dashboard/login"),
            "redirect": httpx.get(f"{url}/dashboard"), "404 page": browser.get("/dashboard/jobs/no-such-job"),
            "404": httpx.get(f"{url}/nowhere"), "401": httpx.get(f"{url}/v1/jobs"),
            "403": browser.post(f"/dashboard/jobs/{job_id}/cancel", data={}),
            "api": httpx.get(f"{url}/v1/jobs/{job_id}", headers=BEARER),
            "metrics": httpx.get(f"{url}/metrics", headers=BEARER),
            "static": httpx.get(f"{url}/dashboard/static/dashboard.js"), "docs": browser.get("/docs"),
            "artifact": browser.get(f"/dashboard/jobs/{job_id}/artifacts/image"),
            "500": httpx.get(f"{url}/boom"),
        }

    assert {name: r.status_code for name, r in responses.items()} == {
        "page": 200, "login": 200, "redirect": 303, "404 page": 404, "404": 404, "401": 401, "403": 403, "api": 200,
        "metrics": 200, "static": 200, "docs": 200, "artifact": 200, "500": 500}
    for name, response in responses.items():
        assert {header: response.headers.get(header) for header in EVERYWHERE} == EVERYWHERE, name
        expected = ARTIFACT_CONTENT_SECURITY_POLICY if name == "artifact" else CONTENT_SECURITY_POLICY
        assert response.headers["content-security-policy"] == expected, name
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert responses["artifact"].headers["content-type"] == "image/png"


@pytest.mark.timeout(300)
def test_swagger_ui_renders_offline_under_the_security_policy_in_a_real_browser(served: tuple[Namespace, str]) -> None:
    if reason := browser_ready():
        pytest.skip(reason)
    _, url = served
    run = subprocess.run(["node", "docs.mjs", json.dumps({"baseUrl": url, "token": TOKEN})], cwd=BROWSER_DIR,
                         capture_output=True, text=True, timeout=200, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert "/v1/jobs" in seen["operations"] and "/v1/batches" in seen["operations"], seen
    assert seen["title"].startswith("framequeue") and seen["elsewhere"] == [] and seen["errors"] == [], seen
