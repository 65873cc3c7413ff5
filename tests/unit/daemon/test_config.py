from __future__ import annotations

from pathlib import Path

import pytest
import torch

from daemon.alerts import AlertPolicy
from daemon.config import ALERTING_DEFAULTS, load_config, parse_config
from daemon.engine import HostEngine
from daemon.errors import ConfigError
from daemon.processor import Processor
from tests.support import REPO
from train.export import build_step_model, save, untrained_model
from train.model import Forecaster, ModelShape
from train.score import ScoreParams

MODELS = {"models": [{"name": "m", "path": "m.onnx"}]}


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.models[0].name == "machine-temperature"
    assert config.models[0].path == str(REPO / "models" / "machine_temperature.onnx")
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"


def test_unknown_key_names_the_key_and_suggests_the_fix() -> None:
    with pytest.raises(
        ConfigError, match=r"'kafka.bootstrap_server': unknown key; did you mean 'bootstrap_servers'"
    ):
        parse_config({**MODELS, "kafka": {"bootstrap_server": "x:1"}}, Path("."), env={})


def test_wrong_type_names_the_key_and_the_expected_type() -> None:
    with pytest.raises(ConfigError, match=r"'batching.max_batch': expected an integer, got '64' \(str\)"):
        parse_config({**MODELS, "batching": {"max_batch": "64"}}, Path("."), env={})
    with pytest.raises(
        ConfigError, match=r"'state.device': 'gpu' \(str\) is not one of 'auto', 'cpu', 'cuda'"
    ):
        parse_config({**MODELS, "state": {"device": "gpu"}}, Path("."), env={})


def test_missing_models_and_bad_values_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"'models': required key is missing"):
        parse_config({}, Path("."), env={})
    with pytest.raises(ConfigError, match=r"'alerting.fault.resolve_ratio': must be in \(0, 1\]"):
        parse_config({**MODELS, "alerting": {"fault": {"resolve_ratio": 1.5}}}, Path("."), env={})


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("records", "max_bytes", 0, "must be >= 1"),
        ("records", "max_future_s", -1, "must be >= 0"),
        ("records", "carry_missing_for", -1, "must be >= 0"),
        ("state", "max_gap_s", 0, "must be > 0"),
        ("state", "idle_ttl_s", float("nan"), "expected a number, got .nan"),
        ("state", "idle_ttl_s", 0, "must be > 0"),
        ("metrics", "port", 99999, "must be a TCP port"),
        ("metrics", "port", -1, "must be a TCP port"),
        ("reload", "watch_interval_s", -1, "must be >= 0"),
        ("kafka", "commit_interval_ms", -100, "must be >= 0"),
        ("kafka", "readings_topic", "", "must be a topic name"),
        ("kafka", "alerts_topic", "faultcast.readings", "must differ from readings_topic"),
        ("kafka", "scores_topic", "faultcast.readings", "must differ from readings_topic"),
        ("alerting.fault", "threshold", 0, "must be > 0"),
        ("alerting.fault", "cooldown_s", -5, "must be >= 0"),
        ("alerting.fault", "top_channels", -2, "must be >= 0"),
        ("alerting.congestion", "fire_after", 0, "must be >= 1"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_full_key(
    section: str, key: str, value: object, says: str
) -> None:
    data: dict[str, object] = {**MODELS}
    node = data
    for part in section.split("."):
        node = node.setdefault(part, {})  # type: ignore[assignment]
    node[key] = value
    with pytest.raises(ConfigError, match=rf"config key '{section}.{key}': {says}"):
        parse_config(data, Path("."), env={})


def test_a_congestion_limit_must_be_positive_and_is_named_by_its_pattern() -> None:
    limits = {"lane-*": 8.0, "buffer-*": 0}
    with pytest.raises(ConfigError, match=r"'alerting.congestion.limits.buffer-\*': must be > 0"):
        parse_config({**MODELS, "alerting": {"congestion": {"limits": limits}}}, Path("."), env={})


def test_model_entries_need_streams_and_unique_names() -> None:
    with pytest.raises(ConfigError, match=r"'models\[0\].streams': must list at least one"):
        parse_config({"models": [{"name": "m", "path": "m.onnx", "streams": []}]}, Path("."), env={})
    twice = [{"name": "press", "path": "a.onnx"}, {"name": "press", "path": "b.onnx"}]
    with pytest.raises(ConfigError, match=r"model names must be unique; 'press' is used more than once"):
        parse_config({"models": twice}, Path("."), env={})


def test_a_model_whose_streams_an_earlier_one_takes_is_refused() -> None:
    models = [
        {"name": "lines", "path": "a.onnx", "streams": ["lane-*", "buffer-*"]},
        {"name": "lane-7", "path": "b.onnx", "streams": ["lane-7", "buffer-7?"]},
    ]
    with pytest.raises(ConfigError, match=r"model 'lane-7' would never score a stream: .*\('lines'\)"):
        parse_config({"models": models}, Path("."), env={})
    # listed first, the specific model takes its streams and the general one the rest
    assert parse_config({"models": models[::-1]}, Path("."), env={}).models[0].name == "lane-7"
    # one pattern of its own that can win is enough
    models[1]["streams"] = ["lane-7", "oven-*"]
    assert len(parse_config({"models": models}, Path("."), env={}).models) == 2


def test_client_options_pass_through_but_cannot_override_delivery_settings() -> None:
    config = parse_config({**MODELS, "kafka": {"client": {"security_protocol": "SSL"}}}, Path("."), env={})
    assert config.kafka.client == {"security_protocol": "SSL"}
    with pytest.raises(ConfigError, match=r"client.enable_auto_commit': is set by faultcast itself"):
        parse_config({**MODELS, "kafka": {"client": {"enable_auto_commit": True}}}, Path("."), env={})
    with pytest.raises(ConfigError, match=r"client.retries': is set by faultcast itself"):
        parse_config({**MODELS, "kafka": {"client": {"retries": 0}}}, Path("."), env={})
    with pytest.raises(ConfigError, match=r"client.securty_protocol': is not a kafka-python client option"):
        parse_config({**MODELS, "kafka": {"client": {"securty_protocol": "SSL"}}}, Path("."), env={})
    with pytest.raises(ConfigError, match=r"did you mean 'sasl_mechanism'"):
        parse_config({**MODELS, "kafka": {"client": {"sasl_mechanisms": "PLAIN"}}}, Path("."), env={})


def test_client_option_values_are_checked_at_start() -> None:
    def client(options: dict[str, object]) -> dict[str, object]:
        return {**MODELS, "kafka": {"client": options}}

    config = parse_config(client({"session_timeout_ms": 10_000, "group_instance_id": "a"}), Path("."), env={})
    assert config.kafka.client == {"session_timeout_ms": 10_000, "group_instance_id": "a"}
    cases = {
        "session_timeout_ms": ("x", r"session_timeout_ms': must be a whole number, not 'x'"),
        "ssl_check_hostname": ("yes", r"ssl_check_hostname': must be true or false"),
        "receive_buffer_bytes": (1.5, r"receive_buffer_bytes': must be a whole number"),
        # kafka-python turns TLS on only for the exact names: a misspelt one would connect in plain text
        "security_protocol": ("SASL_SSLX", r"security_protocol': must be one of PLAINTEXT, SSL, SASL_PLAIN"),
        "sasl_mechanism": ("SCRAM-SHA-1", r"sasl_mechanism': must be one of PLAIN, SCRAM-SHA-256"),
        "ssl_context": ("x", r"ssl_context': takes a Python object, which config.yaml cannot give"),
    }
    # kafka-python's own forms: a version as a string or (YAML has no tuples) a list; null for its default
    fine = {"api_version": [3, 9], "compression_type": None, "group_instance_id": None}
    assert parse_config(client(fine), Path("."), env={}).kafka.client == fine
    assert (
        parse_config(client({"api_version": "3.9"}), Path("."), env={}).kafka.client["api_version"] == "3.9"
    )
    cases["api_version"] = ([3, "x"], r"api_version': must be a version such as \[3, 9\] or '3.9'")
    for name, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            parse_config(client({name: value}), Path("."), env={})


def test_client_secrets_are_read_from_their_files(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret\n", encoding="utf-8")
    secrets = {"sasl_plain_password": "password"}  # relative to the config file's folder
    kafka = {"client": {"sasl_mechanism": "PLAIN"}, "client_secrets": secrets}
    config = parse_config({**MODELS, "kafka": kafka}, tmp_path, env={})
    assert config.kafka.client == {"sasl_mechanism": "PLAIN", "sasl_plain_password": "s3cret"}
    missing = {"client_secrets": {"ssl_password": "gone"}}
    with pytest.raises(
        ConfigError, match=r"client_secrets.ssl_password': cannot read .*gone .*LoadCredential"
    ):
        parse_config({**MODELS, "kafka": missing}, tmp_path, env={})
    twice = {"client": {"sasl_plain_password": "x"}, "client_secrets": secrets}
    with pytest.raises(ConfigError, match=r"client_secrets.sasl_plain_password': is set in kafka.client too"):
        parse_config({**MODELS, "kafka": twice}, tmp_path, env={})
    with pytest.raises(ConfigError, match=r"client_secrets.group_id': is set by faultcast itself"):
        parse_config({**MODELS, "kafka": {"client_secrets": {"group_id": "password"}}}, tmp_path, env={})


def test_a_key_given_twice_in_the_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "models:\n  - {name: m, path: m.onnx}\nkafka:\n  bootstrap_servers: k:9092\nkafka:\n  group_id: g\n",
        encoding="utf-8",
    )
    # YAML parsers keep the last one: the first kafka block, servers and all, would be gone without a word
    with pytest.raises(ConfigError, match=r"key 'kafka' is given twice, on lines 3 and 5; keep one"):
        load_config(path, env={})


def test_kafka_bootstrap_environment_wins_and_paths_resolve_against_the_file(tmp_path: Path) -> None:
    config = parse_config(MODELS, tmp_path, env={"KAFKA_BOOTSTRAP": "10.0.0.1:9092"})
    assert config.kafka.bootstrap_servers == "10.0.0.1:9092"
    assert config.models[0].path == str(tmp_path / "m.onnx")


def test_unreadable_or_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_config(bad)


def test_alert_settings_left_unset_come_from_the_model_then_the_defaults(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Forecaster(ModelShape(features=1, hidden=4)).eval()
    params = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,))
    calibrated = {"threshold": 2.0, "alerting": {"fire_after": 1, "resolve_after": 9, "resolve_ratio": 0.5}}
    meta = {"name": "m", "version": "1", "features": ["a"], "thresholds": {"fault": calibrated}}
    save(build_step_model(model, params, meta), tmp_path / "m.onnx")

    def policy(fault: dict[str, object]) -> AlertPolicy:
        data = {"models": [{"name": "m", "path": "m.onnx"}], "alerting": {"fault": fault}}
        config = parse_config(data, tmp_path, env={})
        return (
            Processor(config, {"m": HostEngine(tmp_path / "m.onnx", 4)}).runtimes["m"].kinds["fault"].policy
        )

    from_model = policy({})
    assert (from_model.fire_after, from_model.resolve_after, from_model.resolve_threshold) == (1, 9, 1.0)
    configured = policy({"fire_after": 4})
    assert (configured.fire_after, configured.resolve_after) == (4, 9)
    plain = untrained_model(tmp_path / "plain.onnx", ("a",))
    data = {"models": [{"name": "m", "path": str(plain)}]}
    default = Processor(parse_config(data, tmp_path, env={}), {"m": HostEngine(plain, 4)})
    assert default.runtimes["m"].kinds["fault"].policy.fire_after == ALERTING_DEFAULTS["fire_after"]
