"""The typed configuration, the metrics text format and group commit."""

import asyncio

import pytest

from bot.batching import GroupCommitter
from bot.config import ConfigError, Secret, load_config
from bot.metrics import Metrics


def test_env_names_follow_probot_and_secrets_never_print(tmp_path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n")
    cfg = load_config(environ={"APP_ID": "42", "PRIVATE_KEY_PATH": str(key), "WEBHOOK_SECRET": "s3cret",
                               "PORT": "8080", "TUNEBOT_DATABASE_URL": "postgresql://db/x"})
    assert cfg.app_mode and cfg.port == 8080 and cfg.database_url == "postgresql://db/x"
    assert cfg.private_key.get().startswith("-----BEGIN")
    assert "s3cret" not in repr(cfg) and "BEGIN" not in repr(cfg)


def test_file_then_env_then_overrides(tmp_path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text(
        "port: 4000\npublic_url: https://bot.example\ndingtalk:\n  - {name: team, webhook: 'http://x', secret: SEC1}\n"
    )
    cfg = load_config(str(f), environ={"PORT": "5000"}, workers=2)
    assert cfg.port == 5000 and cfg.public_url == "https://bot.example" and cfg.workers == 2
    assert cfg.dingtalk_robots[0].secret == Secret("SEC1")


def test_problems_are_instructions() -> None:
    cfg = load_config(environ={})
    problems = "\n".join(cfg.problems())
    assert "WEBHOOK_SECRET" in problems and "GITHUB_TOKEN" in problems
    assert load_config(environ={"WEBHOOK_SECRET": "x", "GITHUB_TOKEN": "t",
                                "TUNEBOT_JOB_SIGNING_KEY": "k"}).problems() == []


def test_connection_limits_have_safe_defaults_and_come_from_the_environment() -> None:
    base = {"WEBHOOK_SECRET": "x", "GITHUB_TOKEN": "t", "TUNEBOT_JOB_SIGNING_KEY": "k"}
    cfg = load_config(environ=base)
    assert (cfg.read_timeout_s, cfg.keepalive_timeout_s, cfg.max_connections) == (10.0, 75.0, 256)
    cfg = load_config(environ={**base, "TUNEBOT_READ_TIMEOUT_S": "2.5", "TUNEBOT_KEEPALIVE_TIMEOUT_S": "30",
                               "TUNEBOT_MAX_CONNECTIONS": "64"})
    assert (cfg.read_timeout_s, cfg.keepalive_timeout_s, cfg.max_connections) == (2.5, 30.0, 64)
    bad = load_config(environ={**base, "TUNEBOT_READ_TIMEOUT_S": "0", "TUNEBOT_MAX_CONNECTIONS": "0"}).problems()
    assert any("TUNEBOT_READ_TIMEOUT_S" in p for p in bad) and any("TUNEBOT_MAX_CONNECTIONS" in p for p in bad)


@pytest.mark.parametrize(("content", "message"), [("[1, 2]", "expected a mapping"), ("colour: red", "unknown key"),
                                                  ("port: [", "invalid YAML"), ("port: abc", "expected a number")])
def test_bad_config_files(tmp_path, content, message) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(str(f), environ={})


def test_unreadable_secret_file_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH: cannot read /nonexistent"):
        load_config(environ={"PRIVATE_KEY_PATH": "/nonexistent/key.pem"})


def test_metrics_render_prometheus_text() -> None:
    m = Metrics()
    m.describe("webhook_requests_total", "counter", "Webhook requests by outcome.")
    m.inc("webhook_requests_total", labels={"outcome": "accepted"})
    m.inc("webhook_requests_total", 2, labels={"outcome": "bad_signature"})
    m.set("queue_depth", 3)
    m.observe("webhook_seconds", 0.003)
    m.observe("webhook_seconds", 7.0)
    text = m.render()
    assert "# TYPE tunebot_webhook_requests_total counter" in text
    assert 'tunebot_webhook_requests_total{outcome="bad_signature"} 2' in text
    assert "tunebot_queue_depth 3" in text
    assert 'tunebot_webhook_seconds_bucket{le="0.005"} 1' in text
    assert 'tunebot_webhook_seconds_bucket{le="+Inf"} 2' in text
    assert "tunebot_webhook_seconds_count 2" in text


async def test_group_commit_batches_concurrent_callers_and_propagates_failure() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    gc: GroupCommitter[int, int] = GroupCommitter(write)
    results = await asyncio.gather(*(gc.enqueue(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert len(writes) <= 3 and sum(len(w) for w in writes) == 50

    async def broken(items: list[int]) -> list[int]:
        raise OSError("disk full")

    bad: GroupCommitter[int, int] = GroupCommitter(broken)
    with pytest.raises(OSError, match="disk full"):
        await bad.enqueue(1)
