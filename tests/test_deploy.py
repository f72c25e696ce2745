"""The Dockerfile and compose file, checked the only way this machine allows: by reading them."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_is_published_on_host_port_8003():
    assert compose()["services"]["payment-service"]["ports"] == ["8003:8000"]


def test_migrations_finish_before_gunicorn_starts():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert (
        services["payment-service"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_database_credentials_come_from_the_secrets_files():
    document = compose()
    assert {name: s["file"] for name, s in document["secrets"].items()} == {
        "db_user": "./secrets/db_user.txt",
        "db_password": "./secrets/db_password.txt",
    }
    for name in ("db_user", "db_password"):
        assert (ROOT / document["secrets"][name]["file"]).is_file()
    env = document["services"]["payment-service"]["environment"]
    assert env["POSTGRES_USER_FILE"] == "/run/secrets/db_user"
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert (
        document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == "/run/secrets/db_password"
    )


def test_the_image_runs_gunicorn_with_the_repository_config():
    cmd = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD")
    ]
    assert cmd == ['CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]']


def test_gunicorn_config_binds_the_port_from_the_environment():
    result = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path('gunicorn.conf.py')['bind'])"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PORT": "8000"},
    )
    assert result.stdout.strip() == "0.0.0.0:8000"


def test_the_worker_runs_from_the_same_image_after_migrations():
    worker = compose()["services"]["worker"]
    assert worker["command"] == ["flask", "--app", "wsgi", "payments", "worker"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        worker["environment"]["MIDTRANS_SIMULATOR_URL"] == "http://payment-service:8000/_simulator"
    )
    assert worker["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
