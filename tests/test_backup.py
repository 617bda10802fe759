"""`sohoa backup` / `sohoa restore`: API keys and web users, which object storage does not hold,
survive a lost catalog database (issue 11, point 6). Through the real `sohoa` command."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.keys import KeyStore
from api.web.users import UserStore
from ingest.settings import Settings

SOHOA = Path(sys.executable).parent / "sohoa"
PASSWORD = "mat-khau-an-toan-1"


def sohoa(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SOHOA), *args], capture_output=True, text=True, timeout=300,
                          input=stdin, env={**os.environ, "SOHOA_DATA_DIR": str(data)})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def lose_catalog(data: Path) -> None:
    """The catalog database gone outright (its SQLite side files too)."""
    for path in data.glob("catalog.sqlite3*"):
        path.unlink()


def settings(data: Path) -> Settings:
    return Settings(data_dir=data, scanner_discovery=False)


def answers(data: Path, key: str) -> int:
    """The status a dossier search with this key gets, from a fresh app on the data directory."""
    with TestClient(create_app(settings(data), submit=lambda *a, **k: {})) as client:
        return client.get("/api/v1/dossiers", headers={"Authorization": f"Bearer {key}"}).status_code


def web_login(data: Path, username: str, password: str) -> int:
    """The status of a login through the web app's form (303 to the start page when it works)."""
    with TestClient(create_app(settings(data), submit=lambda *a, **k: {})) as client:
        form = client.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, "no CSRF field on the login form"
        done = client.post("/login", data={"username": username, "password": password,
                                           "csrf": csrf.group(1)}, follow_redirects=False)
        if done.status_code == 303:
            assert "sohoa_session" in client.cookies
        return done.status_code


@pytest.fixture
def office(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A data directory with keys made by `sohoa apikey create`, an active and a disabled user."""
    data = tmp_path / "data"
    keys = {
        "processor": ok(sohoa(data, "apikey", "create", "--role", "processor", "--agency",
                              "000.00.04.H40", "--name", "một cửa")).strip(),
        "admin": ok(sohoa(data, "apikey", "create", "--role", "admin", "--agency", "*")).strip(),
    }
    ok(sohoa(data, "user", "create", "--username", "an.nv", "--role", "auditor", "--agency",
             "000.00.04.H40", "--name", "Nguyễn Văn An", "--password-stdin", stdin=PASSWORD + "\n"))
    ok(sohoa(data, "user", "create", "--username", "left.office", "--role", "processor",
             "--agency", "*", "--password-stdin", stdin=PASSWORD + "\n"))
    ok(sohoa(data, "user", "disable", "left.office"))
    return data, keys


def test_keys_and_users_come_back_after_a_lost_catalog(office, tmp_path: Path) -> None:
    """Given keys and users backed up, when the catalog database is lost and `sohoa reindex` runs,
    then it says keys and users were not rebuilt (0 of each) and the keys answer 401; after
    `sohoa restore` the same key authenticates and the user logs in again, the disabled user
    stays disabled, and a second restore changes nothing."""
    data, keys = office
    backup = tmp_path / "backup" / "keys-users.json"
    backup.parent.mkdir()
    assert answers(data, keys["processor"]) == 200

    made = ok(sohoa(data, "backup", str(backup)))
    assert "backed up 2 API keys and 2 web users" in made

    lose_catalog(data)
    rebuilt = ok(sohoa(data, "reindex"))
    assert "API keys and web users are not in object storage" in rebuilt
    assert "0 keys and 0 users in the catalog now" in rebuilt
    assert "sohoa restore FILE" in rebuilt
    assert answers(data, keys["processor"]) == 401  # what the README warns of

    first = ok(sohoa(data, "restore", str(backup)))
    assert "API keys 2 added, 0 unchanged, 0 replaced, 0 skipped" in first
    assert "web users 2 added, 0 unchanged, 0 replaced, 0 skipped" in first
    assert answers(data, keys["processor"]) == 200
    assert answers(data, keys["admin"]) == 200
    assert web_login(data, "an.nv", PASSWORD) == 303
    assert web_login(data, "an.nv", "not-the-password") == 401
    users = UserStore(settings(data).storage.catalog_url)
    restored = users.authenticate("an.nv", PASSWORD)
    assert restored is not None
    assert (restored.role, restored.agencies, restored.display_name) == \
        ("auditor", ("000.00.04.H40",), "Nguyễn Văn An")
    assert users.authenticate("left.office", PASSWORD) is None  # still disabled
    assert users.get("left.office") is not None

    second = ok(sohoa(data, "restore", str(backup)))
    assert "API keys 0 added, 2 unchanged, 0 replaced, 0 skipped" in second
    assert "web users 0 added, 2 unchanged, 0 replaced, 0 skipped" in second

    again = ok(sohoa(data, "reindex"))  # the index only: keys and users stay
    assert "2 keys and 2 users in the catalog now" in again
    assert answers(data, keys["processor"]) == 200

    trail = ok(sohoa(data, "audit", "verify"))
    assert "audit log intact" in trail


def test_the_backup_file_is_private_and_holds_no_secret(office, tmp_path: Path) -> None:
    """Given a backup, then the file has mode 0600 (whatever the umask), holds every key's digest
    and each user's scrypt hash, and neither a key nor a password in plain text."""
    data, keys = office
    backup = tmp_path / "keys-users.json"
    backup.write_text("an older backup")
    backup.chmod(0o644)
    ok(sohoa(data, "backup", str(backup)))
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    text = backup.read_text()
    for key in keys.values():
        secret = key.split("_", 2)[2]
        assert key not in text and secret not in text
    assert PASSWORD not in text
    document = json.loads(text)
    assert (document["format"], document["version"]) == ("sohoa-backup", 1)
    assert document["created_at"] and "sohoa_version" in document
    assert sorted(k["role"] for k in document["api_keys"]) == ["admin", "processor"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", k["digest"]) for k in document["api_keys"])
    assert {u["username"]: u["active"] for u in document["users"]} == \
        {"an.nv": True, "left.office": False}
    assert all(u["password_hash"].startswith("scrypt$") for u in document["users"])
    assert not [p for p in backup.parent.iterdir() if ".tmp-" in p.name]  # nothing left over

    to_stdout = sohoa(data, "backup", "-")
    assert to_stdout.returncode == 0 and "backed up 2 API keys" in to_stdout.stderr
    assert json.loads(to_stdout.stdout)["api_keys"] == document["api_keys"]


def malformed(document: dict) -> list[tuple[str, str, str]]:
    """Broken variants of a good backup document: (name, file content, expected message)."""
    bad_user = json.loads(json.dumps(document))
    bad_user["users"][1]["password_hash"] = "plaintext-password"
    missing = json.loads(json.dumps(document))
    del missing["api_keys"][0]["digest"]
    newer = {**document, "version": 2}
    return [
        ("not json", "{not json", "not a sohoa backup (not JSON"),
        ("another document", json.dumps({"hello": "world"}), "not a sohoa backup"),
        ("newer version", json.dumps(newer), "backup format version 2"),
        ("bad user after good keys", json.dumps(bad_user), "users[1].password_hash"),
        ("missing field", json.dumps(missing), "api_keys[0]: missing digest"),
    ]


def test_a_malformed_file_is_refused_and_changes_nothing(office, tmp_path: Path) -> None:
    """Given a backup restored into an empty catalog from a malformed or wrong-version file, then
    exit status 1 with a clear message and no key or user is written (even the good keys before a
    bad user record: one transaction)."""
    data, keys = office
    good = tmp_path / "good.json"
    ok(sohoa(data, "backup", str(good)))
    lose_catalog(data)
    ok(sohoa(data, "reindex"))
    for name, content, message in malformed(json.loads(good.read_text())):
        broken = tmp_path / "broken.json"
        broken.write_text(content)
        result = sohoa(data, "restore", str(broken))
        assert result.returncode == 1, name
        assert message in result.stderr and "nothing restored" in result.stderr, \
            (name, result.stderr)
        assert "Traceback" not in result.stderr
    url = settings(data).storage.catalog_url
    assert KeyStore(url).export_records() == [] and UserStore(url).export_records() == []
    assert answers(data, keys["processor"]) == 401


def test_differing_records_are_kept_unless_replace_and_dry_run_writes_nothing(
        office, tmp_path: Path) -> None:
    """Given a backup whose key was since renamed in the file and whose user has another role,
    then restore skips both and says in which fields they differ; --dry-run says what --replace
    would do and writes nothing; --replace takes the file's records."""
    data, _ = office
    backup = tmp_path / "b.json"
    ok(sohoa(data, "backup", str(backup)))
    document = json.loads(backup.read_text())
    document["api_keys"][0]["name"] = "renamed"
    document["users"][0]["role"] = "admin"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    url = settings(data).storage.catalog_url
    before = (KeyStore(url).export_records(), UserStore(url).export_records())

    skipped = ok(sohoa(data, "restore", str(changed)))
    assert "API keys 0 added, 1 unchanged, 0 replaced, 1 skipped" in skipped
    assert "web users 0 added, 1 unchanged, 0 replaced, 1 skipped" in skipped
    assert f"skipped key {document['api_keys'][0]['id']}: differs from the database in name" \
        in skipped
    assert "skipped user an.nv: differs from the database in role" in skipped
    dry = ok(sohoa(data, "restore", "--replace", "--dry-run", str(changed)))
    assert "dry run, nothing written" in dry and "would replace user an.nv" in dry
    assert (KeyStore(url).export_records(), UserStore(url).export_records()) == before

    ok(sohoa(data, "restore", "--replace", str(changed)))
    assert UserStore(url).get("an.nv").role == "admin"  # type: ignore[union-attr]
    assert KeyStore(url).export_records()[0]["name"] == "renamed"
