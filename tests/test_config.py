"""Configuration from the environment, and the configurations that must refuse to start."""

import sys

import pytest
import sqlalchemy as sa

from tests.support.production import PRODUCTION_ENV
from tiketq import create_app
from tiketq.config import SIMULATOR_SERVER_KEY, ConfigError, from_environ, validate
from tiketq.extensions import db


def config(**env):
    return from_environ(env, "/srv/instance")


def test_nothing_set_means_sqlite_in_instance_and_the_in_app_simulator():
    settings = config()
    validate(settings)
    assert settings["SQLALCHEMY_DATABASE_URI"] == "sqlite:////srv/instance/tiketq.sqlite3"
    assert settings["MIDTRANS_SIMULATOR"] and settings["MIDTRANS_SIMULATOR_IN_APP"]
    assert settings["MIDTRANS_SERVER_KEY"] == SIMULATOR_SERVER_KEY
    assert settings["MIDTRANS_BASE_URL"] == "http://127.0.0.1:8003/_simulator"


def test_the_in_app_simulator_follows_port():
    assert config(PORT="9000")["MIDTRANS_BASE_URL"] == "http://127.0.0.1:9000/_simulator"


def test_a_server_key_turns_the_simulator_off():
    settings = config(
        MIDTRANS_SERVER_KEY="SB-Mid-server-abc", MIDTRANS_CLIENT_KEY="SB-Mid-client-abc"
    )
    validate(settings)
    assert not settings["MIDTRANS_SIMULATOR"] and settings["MIDTRANS_BASE_URL"] is None


def test_forced_simulator_accepts_the_configured_key():
    settings = config(
        MIDTRANS_SIMULATOR="true", MIDTRANS_SERVER_KEY="SB-Mid-server-mine", MIDTRANS_CLIENT_KEY="c"
    )
    assert (
        settings["MIDTRANS_SIMULATOR_IN_APP"]
        and settings["MIDTRANS_SERVER_KEY"] == "SB-Mid-server-mine"
    )


def test_an_external_simulator_is_reached_by_base_url():
    settings = config(MIDTRANS_SIMULATOR="true", MIDTRANS_BASE_URL="http://sim:8004")
    assert (
        not settings["MIDTRANS_SIMULATOR_IN_APP"]
        and settings["MIDTRANS_BASE_URL"] == "http://sim:8004"
    )


def test_database_url_wins_over_postgres_parts():
    settings = config(DATABASE_URL="postgres://u:p@db/x", POSTGRES_HOST="other")
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://u:p@db/x"


def test_postgres_parts_and_secret_files_build_the_url(tmp_path):
    (tmp_path / "user").write_text("tiketq\n")
    (tmp_path / "password").write_text("s3cr3t/with@chars\n")
    settings = config(
        POSTGRES_HOST="db",
        POSTGRES_DB="payments",
        POSTGRES_USER_FILE=str(tmp_path / "user"),
        POSTGRES_PASSWORD_FILE=str(tmp_path / "password"),
    )
    assert (
        settings["SQLALCHEMY_DATABASE_URI"]
        == "postgresql+psycopg2://tiketq:s3cr3t%2Fwith%40chars@db:5432/payments"
    )


def test_midtrans_keys_can_come_from_files(tmp_path):
    (tmp_path / "server").write_text("SB-Mid-server-fromfile")
    settings = config(
        MIDTRANS_SERVER_KEY_FILE=str(tmp_path / "server"), MIDTRANS_CLIENT_KEY="SB-Mid-client-x"
    )
    assert settings["MIDTRANS_SERVER_KEY"] == "SB-Mid-server-fromfile"


def test_an_unreadable_secret_file_is_named():
    with pytest.raises(ConfigError, match="MIDTRANS_SERVER_KEY_FILE=/nope"):
        config(MIDTRANS_SERVER_KEY_FILE="/nope")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"MIDTRANS_IS_PRODUCTION": "true"}, "MIDTRANS_SIMULATOR=false"),
        (
            {
                "MIDTRANS_IS_PRODUCTION": "true",
                "MIDTRANS_SIMULATOR": "true",
                "MIDTRANS_SERVER_KEY": "Mid-server-x",
                "MIDTRANS_CLIENT_KEY": "Mid-client-x",
            },
            "simulator",
        ),
        (
            {"MIDTRANS_IS_PRODUCTION": "true", "MIDTRANS_SIMULATOR": "false"},
            "needs MIDTRANS_SERVER_KEY",
        ),
        (
            {
                "MIDTRANS_IS_PRODUCTION": "true",
                "MIDTRANS_SERVER_KEY": "SB-Mid-server-x",
                "MIDTRANS_CLIENT_KEY": "SB-Mid-client-x",
            },
            "sandbox key",
        ),
        (
            {
                "MIDTRANS_IS_PRODUCTION": "true",
                "MIDTRANS_SERVER_KEY": "Mid-server-x",
                "MIDTRANS_CLIENT_KEY": "SB-Mid-client-x",
            },
            "sandbox key",
        ),
        ({"MIDTRANS_SIMULATOR": "false"}, "MIDTRANS_SERVER_KEY"),
    ],
)
def test_configurations_that_would_take_money_wrongly_refuse_to_start(env, says):
    with pytest.raises(ConfigError, match=says):
        validate(config(**env))


def test_a_production_configuration_with_production_keys_starts():
    validate(config(**PRODUCTION_ENV))


def test_production_refuses_the_transaction_services_default_jwt_secret():
    production = {**PRODUCTION_ENV}
    del production["JWT_SECRET"]
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        validate(config(**production))


@pytest.mark.parametrize(
    ("weak", "says"),
    [
        ({"API_AUTH_REQUIRED": "false"}, "API_AUTH_REQUIRED=true"),
        ({"METRICS_TOKEN": ""}, "METRICS_TOKEN (or METRICS_ENABLED=false)"),
        ({"JWT_SECRET": "secret"}, "JWT_SECRET (or JWT_SECRET_FILE)"),
        ({"JWT_SECRET": "x" * 31}, "JWT_SECRET of at least 32 bytes"),
        ({"SECRET_KEY": "s"}, "SECRET_KEY of at least 32 bytes"),
        ({"SECRET_KEY": ""}, "SECRET_KEY (or SECRET_KEY_FILE)"),
        ({"SECRET_KEY": "ChangeMe"}, "SECRET_KEY (or SECRET_KEY_FILE)"),
        ({"EVENT_SIGNING_SECRET": "short"}, "EVENT_SIGNING_SECRET of at least 32 bytes"),
        ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI=redis://"),
        ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL (e.g. https://"),
        ({"PUBLIC_BASE_URL": "http://pay.tiketq.example"}, "PUBLIC_BASE_URL starting with https"),
    ],
)
def test_production_refuses_each_weak_setting_saying_what_to_set(weak, says):
    with pytest.raises(ConfigError, match="refuses weak settings") as refused:
        validate(config(**{**PRODUCTION_ENV, **weak}))
    assert says in str(refused.value)


def test_production_names_every_weak_setting_at_once():
    with pytest.raises(ConfigError) as refused:
        validate(
            config(
                **{**PRODUCTION_ENV, "API_AUTH_REQUIRED": "", "SECRET_KEY": "", "METRICS_TOKEN": ""}
            )
        )
    assert str(refused.value).count("\n- ") == 3


def test_production_without_metrics_needs_no_metrics_token():
    validate(config(**{**PRODUCTION_ENV, "METRICS_TOKEN": "", "METRICS_ENABLED": "false"}))


@pytest.mark.parametrize(("flag", "served"), [(None, False), ("false", False), ("true", True)])
def test_production_serves_the_api_docs_only_when_asked_to(flag, served):
    env = {**PRODUCTION_ENV, **({"DOCS_ENABLED": flag} if flag else {})}
    assert config(**env)["DOCS_ENABLED"] is served


def test_outside_production_the_api_docs_stay_on():
    assert config()["DOCS_ENABLED"] is True


def test_event_subscribers_need_a_signing_secret():
    with pytest.raises(ConfigError, match="EVENT_SIGNING_SECRET"):
        validate(config(EVENT_SUBSCRIBER_URLS="http://users:8000/payments/events"))


@pytest.mark.parametrize("name", ["MIDTRANS_IS_PRODUCTION", "MIDTRANS_SIMULATOR"])
def test_a_flag_that_is_not_a_boolean_is_refused(name):
    with pytest.raises(ConfigError, match=name):
        config(**{name: "maybe"})


def test_create_app_refuses_a_production_sandbox_key(monkeypatch):
    from tiketq import create_app

    monkeypatch.setenv("MIDTRANS_IS_PRODUCTION", "true")
    monkeypatch.setenv("MIDTRANS_SERVER_KEY", "SB-Mid-server-x")
    monkeypatch.setenv("MIDTRANS_CLIENT_KEY", "SB-Mid-client-x")
    with pytest.raises(ConfigError, match="sandbox key"):
        create_app()


def test_a_worker_can_use_another_process_in_app_simulator():
    settings = config(MIDTRANS_SIMULATOR_URL="http://payment-service:8000/_simulator")
    assert settings["MIDTRANS_BASE_URL"] == "http://payment-service:8000/_simulator"
    assert not settings["MIDTRANS_SIMULATOR_IN_APP"]


def test_the_simulator_url_is_ignored_when_midtrans_keys_are_set():
    settings = config(
        MIDTRANS_SIMULATOR_URL="http://payment-service:8000/_simulator",
        MIDTRANS_SERVER_KEY="SB-Mid-server-real",
        MIDTRANS_CLIENT_KEY="SB-Mid-client-real",
    )
    assert settings["MIDTRANS_BASE_URL"] is None


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_plain_database_url_connects_with_the_installed_driver(database, scheme):
    # SQLAlchemy maps a bare postgresql:// to psycopg 3, which is not installed: psycopg2 is.
    url = sa.make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    plain = scheme + url[len("postgresql") :]
    settings = from_environ({"DATABASE_URL": plain}, "/tmp/unused-instance")
    app = create_app({"SQLALCHEMY_DATABASE_URI": settings["SQLALCHEMY_DATABASE_URI"]})
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        db.engine.dispose()


def test_finish_url_hosts_include_the_finish_urls_own_host():
    settings = config(
        FINISH_URL="https://TiketQ.example/orders/{order_id}", FINISH_URL_HOSTS="m.tiketq.example"
    )
    assert settings["FINISH_URL_HOSTS"] == {"tiketq.example", "m.tiketq.example"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FINISH_URL": "tiketq.example/orders/{order_id}"}, "FINISH_URL="),
        ({"FINISH_URL": "https://tiketq.example/orders/{order}"}, "placeholders"),
        ({"FINISH_URL": "https://tiketq.example/orders/{order_id"}, "placeholders"),
        ({"FINISH_URL_HOSTS": "tiketq.example:8443"}, "no scheme, port or path"),
        ({**PRODUCTION_ENV, "FINISH_URL": "http://tiketq.example/o/{order_id}"}, "https"),
    ],
)
def test_a_finish_url_that_cannot_work_is_refused(env, says):
    with pytest.raises(ConfigError, match=says):
        validate(config(**env))


@pytest.fixture
def simulator_not_installed(monkeypatch):
    """midtrans_simulator cannot be found or imported, as in the production image."""
    monkeypatch.setitem(sys.modules, "midtrans_simulator", None)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="no-keys"),
        pytest.param(
            {
                "MIDTRANS_SIMULATOR": "true",
                "MIDTRANS_SERVER_KEY": "SB-Mid-server-x",
                "MIDTRANS_CLIENT_KEY": "SB-Mid-client-x",
            },
            id="simulator-forced-with-keys",
        ),
    ],
)
def test_the_in_app_simulator_without_its_package_is_refused_saying_what_to_set(
    simulator_not_installed, env
):
    with pytest.raises(ConfigError) as refused:
        validate(config(**env))
    message = str(refused.value)
    # wsgi.py prints it as one line.
    assert "\n" not in message
    for says in (
        "midtrans_simulator",
        "MIDTRANS_SERVER_KEY and MIDTRANS_CLIENT_KEY",
        "MIDTRANS_SIMULATOR unset or false",
        "docker build --target dev",
        "make run",
    ):
        assert says in message


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(
            {"MIDTRANS_SERVER_KEY": "SB-Mid-server-x", "MIDTRANS_CLIENT_KEY": "SB-Mid-client-x"},
            id="midtrans-sandbox",
        ),
        pytest.param(PRODUCTION_ENV, id="midtrans-production"),
        pytest.param(
            {"MIDTRANS_SIMULATOR": "true", "MIDTRANS_BASE_URL": "http://sim:8004"},
            id="simulator-in-its-own-process",
        ),
        pytest.param(
            {"MIDTRANS_SIMULATOR_URL": "http://payment-service:8000/_simulator"},
            id="another-process-in-app-simulator",
        ),
    ],
)
def test_without_the_simulator_package_what_does_not_mount_it_starts(simulator_not_installed, env):
    validate(config(**env))
