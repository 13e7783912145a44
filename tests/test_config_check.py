"""`--config.check` as users run it: both files checked in one run, warnings printed.

The configuration file and the `--web.config.file` are both validated, and every problem of
each is printed before the exit status 2, so one run shows all there is to fix.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import bcrypt

from tests.exporter_process import REPO, exporter_env

CONFIG_DIR = Path(__file__).parent / "testdata" / "config"
GOOD = "targets: [{name: box, url: 'http://127.0.0.1:11434'}]\n"


def check(config: Path, web: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "exporter", "--config.check", f"--config.file={config}"]
    if web is not None:
        args.append(f"--web.config.file={web}")
    return subprocess.run(
        args, cwd=REPO, env=exporter_env(), capture_output=True, text=True, timeout=60, check=False
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_plain_password_in_the_web_config_fails_the_check(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", GOOD)
    web = write(tmp_path / "web.yml", "basic_auth_users: {alice: 'hunter2-8c1f'}\n")
    result = check(config, web)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert f"{web}: basic_auth_users.alice: the password (not shown) is not a bcrypt" in (
        result.stderr
    )
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_both_files_are_reported_in_one_run(tmp_path: Path) -> None:
    config = CONFIG_DIR / "invalid-max-models.yaml"
    web = write(tmp_path / "web.yml", "basic_auth_user: {}\n")
    result = check(config, web)
    assert result.returncode == 2
    assert f"{config}: targets[0].max_models: 'lots' is not an integer" in result.stderr
    assert f"{web}: unknown key 'basic_auth_user', did you mean 'basic_auth_users'?" in (
        result.stderr
    )


def test_a_good_web_config_file_is_confirmed(tmp_path: Path) -> None:
    config = write(tmp_path / "config.yaml", GOOD)
    hashed = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users: {{alice: '{hashed}'}}\n")
    result = check(config, web)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"configuration OK: {config}\nweb configuration OK: {web}\n"


def test_an_unknown_option_passes_the_check_with_a_warning(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        GOOD + "prompts: [{id: p, text: hi, options: {mirostat: 2, temperature: 0}}]\n",
    )
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"configuration OK: {config}\n"
    (warning,) = result.stderr.splitlines()
    assert " WARNING exporter.config: " in warning
    assert f"{config}: prompt p sets option 'mirostat', which is not among" in warning


def test_an_option_typo_fails_the_check_with_the_suggestion() -> None:
    config = CONFIG_DIR / "invalid-option-typo.yaml"
    result = check(config)
    assert result.returncode == 2
    assert (
        f"{config}: prompts[0].options: unknown option 'temprature', did you mean 'temperature'?"
        in result.stderr
    )
