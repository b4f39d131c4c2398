"""The safety policy: which categories block, which flag, and how the settings name them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from queue_config.safety_policy import (
    Action,
    Category,
    Check,
    SafetyFinding,
    SafetyPolicy,
    flags_field,
    parse_categories,
)
from queue_config.settings import Settings


def finding(category: Category, score: float, check: Check = Check.image, threshold: float = 0.8) -> SafetyFinding:
    return SafetyFinding(check, category, score, threshold)


def test_category_names_are_read_from_commas_or_lists_and_blanks_are_skipped() -> None:
    assert parse_categories("sexual, violence,") == {Category.sexual, Category.violence}
    assert parse_categories(["hate", Category.minors]) == {Category.hate, Category.minors}
    assert parse_categories("") == frozenset()


def test_an_unknown_category_name_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'gore'"):
        parse_categories("sexual,gore")


def test_the_default_policy_blocks_every_category_and_flags_none() -> None:
    policy = SafetyPolicy()

    assert all(policy.action(category) is Action.block for category in Category)
    assert policy.flags([finding(Category.sexual, 0.9)]) == []


def test_a_policy_blocks_flags_or_ignores_each_category() -> None:
    policy = SafetyPolicy(blocked=frozenset({Category.minors}), flagged=frozenset({Category.sexual}))
    findings = [finding(Category.sexual, 0.95), finding(Category.minors, 0.85), finding(Category.violence, 0.99)]

    assert policy.first_block(findings) == findings[1]
    assert policy.flags(findings) == [findings[0]]
    assert policy.action(Category.violence) is Action.allow


def test_the_first_block_is_the_finding_furthest_over_its_own_threshold() -> None:
    policy = SafetyPolicy()
    near = finding(Category.sexual, 0.85, threshold=0.8)
    far = finding(Category.violence, 0.6, Check.prompt, threshold=0.3)

    assert policy.first_block([near, far]) == far
    assert policy.first_block([]) is None


def test_a_finding_says_what_blocked_the_job_in_its_record_fields() -> None:
    fields = finding(Category.sexual, 0.91234).record_fields()

    assert fields == {"blocked_check": "image", "blocked_category": "sexual", "blocked_score": "0.9123",
                      "error": "blocked by the image check: sexual (score 0.912 >= threshold 0.800)"}
    assert flags_field([finding(Category.sexual, 0.9), finding(Category.hate, 0.5, Check.prompt)]) == (
        "image:sexual:0.900,prompt:hate:0.500"
    )


def test_the_settings_read_the_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEQUEUE_SAFETY_BLOCK_CATEGORIES", "sexual,violence")
    monkeypatch.setenv("FRAMEQUEUE_SAFETY_FLAG_CATEGORIES", "hate")

    policy = Settings().safety_policy

    assert policy.blocked == {Category.sexual, Category.violence} and policy.flagged == {Category.hate}
    assert policy.action(Category.minors) is Action.allow


def test_the_settings_block_everything_by_default_and_an_empty_list_blocks_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FRAMEQUEUE_SAFETY_BLOCK_CATEGORIES", raising=False)
    assert Settings().safety_policy.blocked == frozenset(Category)

    monkeypatch.setenv("FRAMEQUEUE_SAFETY_BLOCK_CATEGORIES", "")
    assert Settings().safety_policy.blocked == frozenset()


def test_the_settings_refuse_an_unknown_category(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEQUEUE_SAFETY_BLOCK_CATEGORIES", "sexual,gore")

    with pytest.raises(ValidationError, match="unknown safety category 'gore'"):
        Settings()
