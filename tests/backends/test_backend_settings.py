"""The backend settings of `prescale serve`: what each server gets, and that no password is ever shown.

No server starts here: ``_start`` (our own launcher) is replaced by a recorder, so
these tests see exactly the argv, environment and progress lines `prescale serve`
would use, in well under a second.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli import services
from cli.main import app
from cli.services import BackendConfigError, backends, redact, start_servers
from prescale.settings import load_settings

PASSWORD = "hunter2-s3cr%40t"
PREFECT_DB = f"postgresql+asyncpg://prescale:{PASSWORD}@db.internal:5432/prefect"
MLFLOW_DB = f"postgresql://prescale:{PASSWORD}@db.internal:5432/mlflow"


@pytest.fixture
def launched(monkeypatch):
    """Services ``start_servers`` would launch, recorded instead of started."""
    started = []
    monkeypatch.setattr(services, "_start", lambda service, env, *, timeout: started.append((service, env)))
    return started


def _production(tmp_path, **serve):
    return load_settings(home=tmp_path / "home", serve={
        "prefect_database_url": PREFECT_DB, "mlflow_backend_store_uri": MLFLOW_DB,
        "mlflow_artifacts_destination": "s3://models/prescale", "s3_endpoint_url": "http://minio:9000", **serve,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(PREFECT_DB, "postgresql+asyncpg://prescale:***@db.internal:5432/prefect", id="user-password"),
        pytest.param("postgresql://db/mlflow?user=a&password=x&sslmode=require",
                     "postgresql://db/mlflow?user=a&password=***&sslmode=require", id="password-parameter"),
        pytest.param("postgresql://prescale@db/mlflow", "postgresql://prescale@db/mlflow", id="no-password"),
        pytest.param("sqlite:////var/lib/mlflow.db", "sqlite:////var/lib/mlflow.db", id="sqlite-path-kept"),
        pytest.param("postgresql://u:p@ss@db/x", "postgresql://u:***@db/x", id="at-sign-in-password"),
        pytest.param("postgresql://u:p/w#x?y@db:5432/x", "postgresql://u:***@db:5432/x",
                     id="slash-hash-query-in-password"),
        pytest.param("postgresql://u:a:b:/?#@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require",
                     id="every-separator-in-password"),
        pytest.param("postgresql://db/x?password=a#b&c;d&sslmode=require", "postgresql://db/x?password=***&sslmode=require",
                     id="separators-in-password-parameter"),
    ],
)
def test_redact_masks_passwords_only(url, shown):
    assert redact(url) == shown


def test_progress_and_command_lines_never_show_the_password(tmp_path, launched):
    progress: list[str] = []
    plane = start_servers(_production(tmp_path), progress=progress.append)

    assert len(launched) == 2 and progress
    assert not any(PASSWORD in line for line in progress), progress
    assert "postgresql+asyncpg://prescale:***@db.internal:5432/prefect" in progress[0]
    assert "postgresql://prescale:***@db.internal:5432/mlflow" in progress[1]
    assert PASSWORD not in json.dumps(plane.backends)
    for service, _env in launched:
        assert PASSWORD not in " ".join(service.argv), service.name
        assert PASSWORD not in repr(service), service.name


def test_each_server_gets_its_backend_by_environment(tmp_path, launched, monkeypatch):
    # set the way docs/backends.md says: exported, so they are in this process's environment
    monkeypatch.setenv("PRESCALE_SERVE__PREFECT_DATABASE_URL", PREFECT_DB)
    monkeypatch.setenv("PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI", MLFLOW_DB)
    start_servers(_production(tmp_path), progress=lambda _: None)
    (prefect, prefect_env), (mlflow, mlflow_env) = launched

    assert prefect.env == {"PREFECT_SERVER_DATABASE_CONNECTION_URL": PREFECT_DB}
    assert mlflow.env == {"MLFLOW_BACKEND_STORE_URI": MLFLOW_DB, "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000"}
    assert mlflow.argv[mlflow.argv.index("--artifacts-destination") + 1] == "s3://models/prescale"
    assert "--backend-store-uri" not in mlflow.argv
    for env in (prefect_env, mlflow_env, services.control_plane_env(load_settings())):  # worker and flows too
        assert PASSWORD not in json.dumps(env)  # the shared environment of every child carries no database URL


def test_unset_backends_are_the_embedded_defaults(tmp_path, launched):
    settings = load_settings(home=tmp_path / "home")
    start_servers(settings, progress=lambda _: None)
    (prefect, _), (mlflow, _) = launched

    assert prefect.env == {}
    assert mlflow.env == {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"}
    assert mlflow.argv[mlflow.argv.index("--artifacts-destination") + 1] == str(settings.registry.artifacts)


def test_settings_hide_the_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESCALE_SERVE__MLFLOW_BACKEND_STORE_URI", MLFLOW_DB)
    settings = load_settings(home=tmp_path / "home")
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.serve)
    assert backends(settings).mlflow_store == MLFLOW_DB


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        pytest.param("prefect_database_url", f"postgresql://prescale:{PASSWORD}@db/prefect", "async driver",
                     id="prefect-sync-driver"),
        pytest.param("prefect_database_url", f"prescale:{PASSWORD}@db/prefect", "async driver",
                     id="prefect-not-a-url"),
        pytest.param("mlflow_backend_store_uri", f"prescale:{PASSWORD}@db/mlflow", "must be a database URL",
                     id="mlflow-not-a-url"),
    ],
)
def test_a_bad_url_is_a_user_error_that_does_not_echo_it(tmp_path, setting, value, says):
    with pytest.raises(BackendConfigError, match=says) as caught:
        backends(load_settings(home=tmp_path / "home", serve={setting: value}))
    assert PASSWORD not in str(caught.value)

    env = {"PRESCALE_HOME": str(tmp_path / "cli"), f"PRESCALE_SERVE__{setting.upper()}": value}
    result = CliRunner().invoke(app, ["serve", "--json"], env=env)
    assert result.exit_code == 2, result.output
    assert says in json.loads(result.output)["error"]
    assert PASSWORD not in result.output


def test_an_invalid_setting_names_its_variable_and_never_shows_a_secret(monkeypatch):
    from prescale.settings import SettingsError

    monkeypatch.setenv("PRESCALE_SERVE__PREFECT_PORT", "99999")
    with pytest.raises(SettingsError) as raised:
        load_settings(serve={"prefect_database_url": 12345678})
    message = str(raised.value)
    assert "PRESCALE_SERVE__PREFECT_PORT" in message and "'99999'" in message
    assert "PRESCALE_SERVE__PREFECT_DATABASE_URL" in message and "12345678" not in message
