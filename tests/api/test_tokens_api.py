"""Named tokens with roles: each role does exactly what it may (403 otherwise, 401 without a
token), the token's name is the actor, the file is re-read on change and holds no token."""

from __future__ import annotations

import os

import numpy as np
import pytest

from service import cli
from service.tokens import ROLES, Entry, TokenFileError, Tokens, hash_token, parse, write_file
from tests.helpers import lenet_weights, load_model_spec, upload
from tests.helpers.http import assert_problem, register

ADMIN_TOKEN = "env-admin-token"
TOKENS = {role: f"cvs_{role}-token-0123456789" for role in ROLES}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    write_file(path, [Entry(f"{role}-bot", role, hash_token(t)) for role, t in TOKENS.items()])
    return path


def make(make_app, token_file, **settings):
    app = make_app(admin_token=ADMIN_TOKEN, token_file=str(token_file), **settings)
    client = app.test_client()
    for i in range(12):  # versions for the deletes to take
        resp = client.post(
            "/v1/models/lenet/versions",
            data=upload(load_model_spec("lenet"), lenet_weights(i)),
            headers=bearer(ADMIN_TOKEN),
        )
        assert resp.status_code == 201, resp.data
    return client


class Operations:
    """One request per role level, each repeatable (deletes take a fresh version each time)."""

    def __init__(self, client):
        self.client = client
        self.next_version = 12

    def read(self, headers):
        return self.client.get("/v1/models/lenet/history", headers=headers)

    def predict(self, headers):
        body = {"instances": np.zeros((1, 1, 32, 32)).tolist()}
        return self.client.post("/v1/models/lenet/predict", json=body, headers=headers)

    def write(self, headers):
        return self.client.put(
            "/v1/models/lenet/versions/1/tags/stage", json={"value": "qa"}, headers=headers
        )

    def admin(self, headers):
        resp = self.client.delete(f"/v1/models/lenet/versions/{self.next_version}", headers=headers)
        if resp.status_code == 204:
            self.next_version -= 1
        return resp


@pytest.mark.parametrize("reads_need_token", [False, True])
def test_each_role_does_exactly_what_it_may(make_app, token_file, reads_need_token):
    client = make(make_app, token_file, reads_need_token=reads_need_token)
    ops = Operations(client)
    for held in ROLES:
        for needed in ROLES:
            resp = getattr(ops, needed)(bearer(TOKENS[held]))
            if ROLES.index(held) >= ROLES.index(needed):
                assert resp.status_code in (200, 204), (held, needed, resp.data)
            else:
                assert_problem(resp, 403, f"'{held}-bot' has role {held}", f"role {needed}")
    for needed in ROLES:  # no token at all
        resp = getattr(ops, needed)({})
        if needed in ("read", "predict") and not reads_need_token:
            assert resp.status_code == 200, resp.data
        else:
            body = assert_problem(resp, 401, "Authorization: Bearer")
            assert body["type"].endswith("unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for needed in ROLES:  # a token nobody issued
        assert_problem(getattr(ops, needed)(bearer("cvs_made-up")), 401, "not one this server")
    assert_problem(ops.write({"Authorization": "Basic dXNlcg=="}), 401, "Bearer <token>")
    # the admin token keeps working, as an admin named `admin`
    assert ops.admin(bearer(ADMIN_TOKEN)).status_code == 204
    events = ops.read(bearer(ADMIN_TOKEN)).get_json()["events"]
    assert [(e["actor"], e["action"]) for e in events] == [
        ("admin", "delete_version"),
        ("admin-bot", "delete_version"),
        ("admin-bot", "set_tag"),
        ("write-bot", "set_tag"),
    ] + [("admin", "register")] * 12


def test_refusals_say_in_a_sentence_what_needs_which_role(make_app, token_file):
    ops = Operations(make(make_app, token_file, reads_need_token=True))
    details = {
        needed: getattr(ops, needed)(
            bearer(TOKENS["read"] if needed != "read" else None)
        ).get_json()["detail"]
        for needed in ROLES
    }
    assert details == {
        "read": "reading the registry needs a token with role read or above: "
        "'Authorization: Bearer <token>'",
        "predict": "token 'read-bot' has role read; running a model needs role predict or above",
        "write": "token 'read-bot' has role read; changing the registry needs role write or above",
        "admin": "token 'read-bot' has role read; deleting a model or version, or loading or "
        "unloading a model, needs role admin or above",
    }
    assert ops.write({}).get_json()["detail"] == (
        "changing the registry needs a token with role write or above: "
        "'Authorization: Bearer <token>'"
    )


def test_health_and_docs_stay_open_when_reads_need_a_token(make_app, token_file):
    client = make(make_app, token_file, reads_need_token=True)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/v2/health/live"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v2/models/lenet").status_code == 401
    assert client.get("/v2/models/lenet", headers=bearer(TOKENS["read"])).status_code == 200
    resp = client.post(
        "/v2/models/lenet/infer", json={"inputs": []}, headers=bearer(TOKENS["read"])
    )
    assert resp.status_code == 403 and "role predict" in resp.get_json()["error"]


def test_the_token_file_is_reloaded_without_restart(make_app, token_file):
    client = make(make_app, token_file)
    ops = Operations(client)
    assert ops.write(bearer("cvs_new-one")).status_code == 401
    entries = parse(token_file.read_text())
    write_file(token_file, [*entries, Entry("late", "write", hash_token("cvs_new-one"))])
    assert ops.write(bearer("cvs_new-one")).status_code == 200
    write_file(token_file, [e for e in entries if e.name != "write-bot"])  # revoke
    assert ops.write(bearer(TOKENS["write"])).status_code == 401
    token_file.write_text("write-bot write not-a-hash\n")  # broken: its tokens are refused
    assert ops.write(bearer(TOKENS["admin"])).status_code == 401
    assert ops.write(bearer(ADMIN_TOKEN)).status_code == 200  # the admin token still works
    token_file.unlink()
    assert ops.write(bearer(TOKENS["admin"])).status_code == 401


def test_tokens_alone_close_writes_to_anonymous_callers(make_app, token_file):
    client = make_app(token_file=str(token_file)).test_client()  # loopback, no admin token
    assert_problem(register(client), 401, "role write")
    resp = client.post(
        "/v1/models/lenet/versions",
        data=upload(load_model_spec("lenet"), lenet_weights()),
        headers=bearer(TOKENS["write"]),
    )
    assert resp.status_code == 201
    assert client.get("/v1/models/lenet/history").get_json()["events"][0]["actor"] == "write-bot"


def test_settings_that_cannot_work_are_refused_at_start(make_app, tmp_path):
    with pytest.raises(ValueError, match="CONVSERVE_READS_NEED_TOKEN needs tokens"):
        make_app(reads_need_token=True)
    with pytest.raises(TokenFileError, match="does not exist"):
        make_app(token_file=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("ci write cvs_plaintext-token\n")
    with pytest.raises(TokenFileError, match="line 1.*never the token itself"):
        make_app(token_file=str(bad))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a write", "expected '<name> <role> <sha256>'"),
        (f"a boss {'0' * 64}", "role 'boss'"),
        (f"admin write {'0' * 64}", "reserved"),
        (f"a read {'0' * 64}\na write {'1' * 64}", "line 2: a second token named 'a'"),
        (f"no/slash read {'0' * 64}", "not allowed"),
    ],
)
def test_token_file_errors_name_the_line(text, fragment):
    with pytest.raises(TokenFileError, match=fragment.replace("(", r"\(")):
        parse("# comment\n\n" + text if "line 2" not in fragment else text)


def test_identify_compares_hashes():
    tokens = Tokens("adm", None)
    assert tokens.identify("adm").name == "admin" and tokens.identify("adm").role == "admin"
    assert tokens.identify("adm ") is None and not Tokens(None, None).configured


def test_cli_adds_a_token_prints_it_once_and_stores_its_hash(tmp_path, capsys, monkeypatch):
    path = tmp_path / "conf" / "tokens"
    monkeypatch.setenv("CONVSERVE_TOKEN_FILE", str(path))
    assert cli.main(["token", "add", "ci", "--role", "write"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("cvs_") and len(token) > 40
    text = path.read_text()
    assert token not in text and f"ci write {hash_token(token)}" in text
    assert os.stat(path).st_mode & 0o077 == 0  # only its owner reads it
    assert Tokens(None, path).identify(token).name == "ci"
    assert cli.main(["token", "add", "ci", "--role", "read"]) == 2
    assert "already has a token named 'ci'" in capsys.readouterr().err
    assert cli.main(["token", "add", "bob", "--role", "admin", "--file", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["token", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ci\twrite", "bob\tadmin"]
    assert cli.main(["token", "remove", "ci"]) == 0
    assert Tokens(None, path).identify(token) is None
    assert cli.main(["token", "remove", "ci"]) == 2


def test_concurrent_token_edits_lose_nothing(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from service.tokens import editing, read_file

    path = tmp_path / "tokens"

    def add(i: int) -> None:
        with editing(path) as entries:
            entries.append(Entry(f"t{i}", "read", hash_token(f"token {i}")))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add, range(16)))
    assert sorted(e.name for e in read_file(path)) == sorted(f"t{i}" for i in range(16))


def test_openapi_says_which_role_each_operation_needs(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = spec["paths"]
    assert paths["/v1/models/{name}"]["delete"]["x-convserve-role"] == "admin"
    assert paths["/v1/models/{name}/versions"]["post"]["security"] == [{"bearer": []}]
    predict = paths["/v1/models/{name}/predict"]["post"]
    assert predict["x-convserve-role"] == "predict" and {} in predict["security"]
