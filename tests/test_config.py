"""Configuration: each default stated once (Config() and an empty environment agree), the WFM_*
variables, and gunicorn's settings read from Config."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from workflow_manager.config import PROJECT_ROOT, Config

GUNICORN_CONF = PROJECT_ROOT / "deploy" / "gunicorn.conf.py"


def test_an_empty_environment_gives_the_defaults_of_the_fields():
    assert Config.from_env({}) == Config()
    assert Config.from_env({"WFM_BACKEND": "aws"}) == Config(backend="aws", batch_enabled=False)


def test_embedded_defaults_serve_loopback_with_workers_batch_and_tables():
    config = Config.from_env({})
    assert (config.backend, config.bind_host, config.port) == ("embedded", "127.0.0.1", 8080)
    assert config.starts_workers is True
    assert config.batch_enabled is True
    assert config.creates_tables is True
    assert config.serving_processes == 1


def test_outside_embedded_mode_nothing_local_starts_by_default():
    config = Config.from_env({"WFM_BACKEND": "aws", "WFM_STORE": "dynamodb", "WFM_WORKERS": "4"})
    assert config.bind_host == "0.0.0.0"
    assert config.starts_workers is False
    assert config.batch_enabled is False
    assert config.creates_tables is False
    assert config.serving_processes == 4


def test_defaults_follow_a_backend_changed_after_the_config_was_built():
    config = Config(backend="embedded")
    config.backend = "endpoint"
    assert (config.bind_host, config.starts_workers, config.creates_tables) == ("0.0.0.0", False, False)


def test_a_default_job_queue_turns_the_batch_executor_on():
    config = Config.from_env({"WFM_BACKEND": "aws", "WFM_BATCH_DEFAULT_QUEUE": "jobs"})
    assert config.batch_enabled is True
    assert config.batch_default_queue == "jobs"


def test_variables_are_parsed_and_empty_ones_count_as_unset():
    config = Config.from_env(
        {
            "WFM_PORT": "9090",
            "AWS_REGION": "",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "WFM_NAMESPACE": "",
            "WFM_REQUEST_TIMEOUT_SECONDS": "2.5",
            "WFM_UPDATER": "off",
            "WFM_BATCH_CUSTOM_QUEUES": '{"gpu": "gpu-queue"}',
        }
    )
    assert config.port == 9090
    assert config.region == "eu-west-1"
    assert config.default_namespace == "default"
    assert config.request_timeout_seconds == 2.5
    assert config.updater_enabled is False
    assert config.batch_custom_queues == {"gpu": "gpu-queue"}


def test_an_empty_file_variable_means_no_file():
    config = Config.from_env({"WFM_WORKERS_FILE": "", "WFM_BATCH_JOB_DEFINITIONS_FILE": "/x/defs.yml"})
    assert config.workers_file is None
    assert config.batch_job_definitions_file == Path("/x/defs.yml")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WFM_BACKEND": "cloud"}, "WFM_BACKEND must be one of embedded, endpoint, localstack, aws"),
        ({"WFM_BACKEND": "endpoint"}, "WFM_BACKEND=endpoint needs WFM_AWS_ENDPOINT"),
        ({"WFM_BATCH_CUSTOM_QUEUES": '{"gpu": 1}'}, "WFM_BATCH_CUSTOM_QUEUES must be a JSON object"),
        ({"WFM_LOG_FORMAT": "xml"}, "WFM_LOG_FORMAT must be one of json, text, not 'xml'"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(environ, message):
    with pytest.raises(ValueError, match=message):
        Config.from_env(environ)


def test_logs_are_json_lines_outside_embedded_mode_and_text_in_it_unless_set():
    from workflow_manager.config import log_format

    assert Config.from_env({}).logs_format == "text"
    assert Config.from_env({"WFM_BACKEND": "aws"}).logs_format == "json"
    assert Config.from_env({"WFM_LOG_FORMAT": "JSON"}).logs_format == "json"
    assert Config.from_env({"WFM_BACKEND": "aws", "WFM_LOG_FORMAT": "text"}).logs_format == "text"
    # The command line's reading, before any Config exists, agrees.
    assert [log_format(e) for e in ({}, {"WFM_BACKEND": "aws"}, {"WFM_LOG_FORMAT": "json"})] == [
        "text",
        "json",
        "json",
    ]


def test_gunicorn_reads_its_settings_from_config(monkeypatch):
    for name, value in {
        "WFM_BACKEND": "endpoint",
        "WFM_AWS_ENDPOINT": "http://127.0.0.1:4566",
        "WFM_STORE": "dynamodb",
        "WFM_PORT": "8181",
        "WFM_WORKERS": "3",
        "WFM_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert settings["bind"] == ["0.0.0.0:8181"]
    assert settings["workers"] == 3
    assert settings["loglevel"] == "warning"


def test_gunicorn_serves_the_embedded_default_from_one_process_on_loopback(monkeypatch):
    for name in ("WFM_BACKEND", "WFM_STORE", "WFM_HOST", "WFM_PORT", "WFM_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert settings["bind"] == ["127.0.0.1:8080"]
    assert settings["workers"] == 1


# Who may do what (CONTRACT 9.1): the settings, and deny by default.


def test_security_settings_are_read_from_the_environment():
    config = Config.from_env(
        {
            "WFM_AUTH": "ON",
            "WFM_AUTH_TOKENS_FILE": "/etc/wfm/tokens.yml",
            "WFM_ALLOWED_ORIGINS": "https://Console.example/, http://localhost:3000",
            "WFM_ALLOWED_HOSTS": "wfm.internal, wfm.internal:8443",
            "WFM_ALLOWED_INTEGRATIONS": "arn:aws:states:::aws-sdk:s3:getObject,arn:aws:states:::ecs:",
        }
    )
    assert config.auth == "on" and config.auth_tokens_file == Path("/etc/wfm/tokens.yml")
    assert config.allowed_origins == ("https://console.example", "http://localhost:3000")
    assert config.host_allow_list == ("wfm.internal", "wfm.internal:8443")
    assert config.allowed_integrations == ("arn:aws:states:::aws-sdk:s3:getObject", "arn:aws:states:::ecs:")
    assert config.auth_enabled is True


def test_wfm_auth_takes_only_on_or_off():
    with pytest.raises(ValueError, match="WFM_AUTH must be one of on, off, not 'maybe'"):
        Config.from_env({"WFM_AUTH": "maybe"})


def test_the_embedded_service_answers_loopback_names_at_its_port_and_elsewhere_any_host():
    assert Config(port=9000).host_allow_list == ("localhost:9000", "127.0.0.1:9000", "[::1]:9000")
    assert Config(backend="aws").host_allow_list is None


@pytest.mark.parametrize(
    ("environ", "refusal"),
    [
        ({}, None),
        ({"WFM_AUTH_TOKENS_FILE": "t.yml"}, None),
        ({"WFM_BACKEND": "aws", "WFM_AUTH": "off"}, None),
        ({"WFM_BACKEND": "aws", "WFM_AUTH_TOKENS_FILE": "t.yml"}, None),
        ({"WFM_BACKEND": "aws"}, "WFM_BACKEND=aws would serve without authentication"),
        ({"WFM_BACKEND": "localstack"}, "WFM_BACKEND=localstack would serve without authentication"),
        ({"WFM_HOST": "0.0.0.0"}, "the embedded service would listen on 0.0.0.0 without authentication"),
        ({"WFM_HOST": "0.0.0.0", "WFM_AUTH": "off"}, None),
        ({"WFM_AUTH": "on"}, "WFM_AUTH=on but no tokens file"),
        (
            {"WFM_AUTH": "off", "WFM_AUTH_TOKENS_FILE": "t.yml"},
            "WFM_AUTH=off and WFM_AUTH_TOKENS_FILE are both set",
        ),
    ],
)
def test_deny_by_default_refuses_to_serve_without_tokens_unless_told(environ, refusal):
    found = Config.from_env(environ).startup_refusal()
    if refusal is None:
        assert found is None
    else:
        assert found.startswith("refusing to start: ") and refusal in found and "\n" not in found


def test_auth_off_serves_without_tokens_even_in_embedded_mode():
    assert Config.from_env({"WFM_AUTH": "off"}).auth_enabled is False
    assert Config.from_env({}).auth_enabled is False


def test_activity_heartbeat_seconds_defaults_to_the_executors_and_is_read_from_the_environment():
    from executor.sfn_naming import DEFAULT_ACTIVITY_HEARTBEAT_SECONDS

    assert Config().activity_heartbeat_seconds == DEFAULT_ACTIVITY_HEARTBEAT_SECONDS
    assert Config.from_env({"WFM_ACTIVITY_HEARTBEAT_SECONDS": "60"}).activity_heartbeat_seconds == 60
    assert Config.from_env({"WFM_ACTIVITY_HEARTBEAT_SECONDS": "0"}).activity_heartbeat_seconds == 0
