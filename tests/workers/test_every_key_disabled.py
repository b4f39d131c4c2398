"""When every key of a provider is disabled, a job that needs it fails saying so, naming no key.

Real worker processes run a remote ``image`` stage against the provider simulator, which
has revoked both of the pool's keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.remote import KeyConfig, ProviderSimulator, key_fingerprint
from queue_config.settings import Settings
from tests.workers.remote_stages import provider_of, remote_fleet, remote_toml
from tests.workers.test_job_flow import wait_until_finished
from workers.keys import key_health

KEYS = ["sk-revoked-one-7c41e09b2d", "sk-revoked-two-3f8a65d1c0"]


def test_a_job_fails_saying_every_key_is_disabled_and_the_next_one_fails_at_the_gate(
    settings: Settings, artifacts_dir: Path, tmp_path: Path
) -> None:
    revoked = {key: KeyConfig(requests_per_minute=1000, revoked=True) for key in KEYS}
    with ProviderSimulator(revoked) as simulator:
        toml = remote_toml({"image": ("openai", simulator.base_url)})
        with remote_fleet(settings, tmp_path, artifacts_dir, "framequeue-keys-disabled", toml, KEYS) as fleet:
            [first] = fleet.submit_images(1)  # finds each key revoked, disables it, then has none left
            first_record = wait_until_finished(fleet.status, first, timeout_s=90)
            [second] = fleet.submit_images(1)  # stopped by the key-rotation gate before the stage runs
            second_record = wait_until_finished(fleet.status, second, timeout_s=90)
            client, namespace = fleet.status.client, fleet.settings.namespace
            written = [json.dumps(client.hgetall(fleet.status.job_key(job_id))) for job_id in (first, second)]
            written.append(json.dumps(client.hgetall(fleet.status.dead_letters_key)))
            written.append(json.dumps(client.xrange(fleet.status.events_key)))
            health = key_health(client, namespace)
        stats = simulator.stats()
    written += [log.read_text(errors="replace") for log in fleet.logs]

    for record in (first_record, second_record):
        assert record.state == "failed" and record.stage == "image"
        assert record.error.startswith(f"NoUsableKey: every {provider_of('image')} key is disabled")
    assert first_record.attempts["image"] == 1  # failed at once: no retry can bring a key back
    assert "image" not in second_record.attempts  # the gate failed it before the stage started
    assert sum(entry["unauthorized"] for entry in stats.values()) == len(KEYS)  # each key tried once
    assert sorted(row.fingerprint for row in health if row.state == "disabled") == sorted(map(key_fingerprint, KEYS))
    assert all("HTTP 401" in row.disabled_reason for row in health)
    assert not [key for key in KEYS for text in written if key in text]
