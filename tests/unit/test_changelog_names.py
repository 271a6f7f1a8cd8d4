"""`topics` creates the changelogs the stages will use: the names match the apps' tables."""

from __future__ import annotations

import pytest

from devstack.phi_keys import new_phi_env
from streams.faust_app import changelog_topics
from streams.stages import STAGE_NAMES, changelog_topic_names


def test_the_listed_changelogs_are_those_the_stages_declare(monkeypatch, tmp_path):
    from streams.worker import build_stage

    for name, value in {
        "STREAMS_STORE": "memory",
        "STREAMS_STATE_DIR": str(tmp_path),
        "STREAMS_APP_ID": "acme-pipeline",
        **new_phi_env(),
    }.items():
        monkeypatch.setenv(name, value)
    declared = sorted(
        name for stage in STAGE_NAMES for name in changelog_topics(build_stage(stage))
    )
    assert declared == sorted(changelog_topic_names("acme-pipeline"))
    assert "acme-pipeline-dedupe-entities-changelog" in declared


@pytest.mark.parametrize("app_id", ["spakinect-pipeline", "team-x"])
def test_changelog_names_follow_the_app_id(app_id):
    assert all(name.startswith(f"{app_id}-") for name in changelog_topic_names(app_id))
