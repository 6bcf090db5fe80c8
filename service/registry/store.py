"""The registry's operations: versions, aliases, weights, tags. Every write is one transaction.

Registration validates everything (spec, then weights against it) before touching the
database, then allocates the version number, stores the blob and the version in a single
transaction; a failure at any point leaves no version, no blob and no half-created model.
Every write records its history event (see history.py) in that same transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from service.architecture import Architecture, Limits
from service.errors import Conflict, IntegrityFailure, Malformed, NotFound
from service.weights import DEFAULT_MAX_BYTES, WeightsFile, check_npz, load_npz

from .db import WRITE, PreparedRead
from .diff import diff as layer_diff
from .history import ACTIONS, ANONYMOUS, read_events, record_event, record_set_config, stored_event
from .records import DEFAULT_ALIAS, AliasMove, StoredModel, StoredVersion, VersionDiff, utc
from .tables import aliases, blob_chunks, blobs, model_configs, models, version_tags, versions

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
MAX_TAG_VALUE = 256
MAX_PAGE = 500
#: Version numbers fit the `number` column (INTEGER: 32 bits on PostgreSQL); none is ever larger.
MAX_VERSION = 2**31 - 1


def canonical_json(obj: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise Malformed(
            f"model name {name!r} is not allowed: names are 1-64 lowercase letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS_RE.match(alias) or alias == "latest":
        raise Malformed(
            f"alias {alias!r} is not allowed: aliases are 1-64 lowercase letters, digits, '.', "
            f"'_' or '-', starting with a letter, and not 'latest' (which always means the newest)"
        )
    return alias


def check_tag(key: str, value: str | None = None) -> None:
    if not TAG_KEY_RE.match(key):
        raise Malformed(
            f"tag key {key!r} is not allowed: keys are 1-64 letters, digits, '.', '_', '/' or "
            f"'-', starting with a letter or digit"
        )
    if value is not None and len(value) > MAX_TAG_VALUE:
        raise Malformed(f"the value of tag {key!r} is {len(value)} characters long; at most 256")


def parse_tag_filter(text: str) -> tuple[str, str | None]:
    """`key:value` (that value) or `key` (any value), as `?tag=` takes them."""
    key, sep, value = text.partition(":")
    check_tag(key, value if sep else None)
    return key, (value if sep else None)


def version_number(ref: str) -> int | None:
    """The version number a `{ref}` spells (ASCII digits only), else None (an alias or latest).

    Numbers beyond any version's are still numbers: they name no version (404), rather than
    reaching the database as a value its column cannot hold.
    """
    if ref.isascii() and ref.isdigit():
        return int(ref)
    return None


def _findable(name: str) -> bool:
    """Whether a model or alias of this name can exist (so the database is worth asking)."""
    return bool(NAME_RE.match(name))


def _cursor_number(cursor: str) -> int:
    """A cursor that holds a version number or a row id (INTEGER columns), as handed out."""
    value = decode_cursor(cursor)
    if type(value) is not int or not 0 <= value <= MAX_VERSION:
        raise Malformed(f"cursor {cursor!r} is not one this server handed out")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):
        raise Malformed(f"cursor {cursor!r} is not one this server handed out") from None


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def page_size(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def paged(rows: list[Any], limit: int, key: str, items: list[Any]) -> Page:
    """Keyset pagination: `rows` was fetched with limit + 1, so one more row means another page,
    whose cursor is the key of the last row shown."""
    more = len(rows) > limit
    return Page(items, encode_cursor(rows[limit - 1][key]) if more else None)


class VersionGone(NotFound):
    """A version resolved a moment ago was deleted before it could be read."""


@dataclass(frozen=True)
class Resolved:
    """One version as a request resolved it. `id` and both hashes name its content for good."""

    model: str
    number: int
    id: int
    spec_sha256: str
    weights_sha256: str

    @property
    def key(self) -> tuple[int, str, str]:
        # SQLite may hand a deleted row's id to a new version, so the hashes are part of the key.
        return (self.id, self.spec_sha256, self.weights_sha256)


@dataclass(frozen=True)
class Ref:
    """A `{ref}` as parse_ref read it: which lookup answers it, with what value, and what a
    model lacks when the lookup finds nothing."""

    #: "number", "alias" or "preferred" (the alias `value` names, else the newest version);
    #: None when nothing it could name can exist, so the database is not asked
    lookup: str | None
    value: int | str
    #: the end of "model {name} has …" for a miss
    missing: str


def parse_ref(ref: str | None) -> Ref:
    """The one grammar of `{ref}`: ASCII digits are a version number, `latest` is the newest
    version, anything else an alias. No ref (None) is alias `default` when it exists, else the
    newest version."""
    if ref is None:
        return Ref("preferred", DEFAULT_ALIAS, "no versions")
    if ref == "latest":  # "" is never an alias: the newest
        return Ref("preferred", "", "no versions")
    number = version_number(ref)
    if number is not None:
        return Ref("number" if number <= MAX_VERSION else None, number, f"no version {ref}")
    missing = f"no alias {ref!r} (nor is it a version number)"
    return Ref("alias" if _findable(ref) else None, ref, missing)


_OF_MODEL = models.join(versions, versions.c.model_id == models.c.id)
_NAMED = models.c.name == sa.bindparam("name")


def _lookup(kind: str, *columns: Any) -> sa.Select:
    """The statement of one kind of Ref lookup (params `name` and `value`), selecting `columns`
    of the version it finds."""
    q = sa.select(*columns)
    if kind == "number":
        return q.select_from(_OF_MODEL).where(_NAMED, versions.c.number == sa.bindparam("value"))
    if kind == "alias":
        return q.select_from(_OF_MODEL.join(aliases, aliases.c.version_id == versions.c.id)).where(
            _NAMED, aliases.c.name == sa.bindparam("value")
        )
    assert kind == "preferred", kind
    named_alias = sa.and_(
        aliases.c.version_id == versions.c.id, aliases.c.name == sa.bindparam("value")
    )
    return (
        q.select_from(_OF_MODEL.outerjoin(aliases, named_alias))
        .where(_NAMED)
        .order_by(aliases.c.version_id.is_(None), versions.c.number.desc())
        .limit(1)
    )


_LOOKUPS = ("number", "alias", "preferred")
#: What resolve() needs of a version (Resolved's fields, in order). Its statements are compiled
#: once per engine (PreparedRead): resolve runs on every prediction, and building and executing
#: a select through SQLAlchemy costs more than SQLite takes to answer it.
_RESOLVED = (versions.c.number, versions.c.id, versions.c.spec_sha256, versions.c.weights_sha256)
#: The same lookups for the whole version row, inside a transaction that reads or writes it.
_ROW = {kind: _lookup(kind, versions) for kind in _LOOKUPS}


class Registry:
    """Models, their immutable numbered versions, aliases and weights, in one SQL database."""

    def __init__(
        self,
        engine: Engine,
        limits: Limits | None = None,
        max_weight_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.engine = engine
        self.limits = limits or Limits()
        #: the most a weights file may unpack to (the service passes its upload limit)
        self.max_weight_bytes = max_weight_bytes
        self._resolving = {
            kind: PreparedRead(engine, _lookup(kind, *_RESOLVED)) for kind in _LOOKUPS
        }

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.execution_options(**WRITE).begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def model_write(self, name: str) -> Iterator[tuple[Connection, sa.RowMapping]]:
        """A write transaction on model `name` with its row locked: (connection, model row).

        For writes defined outside this class (such as a model's config): make the change on the
        connection and record it with `history.record_event` / `record_set_config` before the
        block ends; both commit together, or neither does. NotFound if there is no such model.
        """
        with self._write() as conn:
            yield conn, self._model_row(conn, name, lock=True)

    # -- register ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        spec: Any,
        weights: bytes | WeightsFile,
        description: str = "",
        actor: str = ANONYMOUS,
        tags: dict[str, str] | None = None,
    ) -> StoredVersion:
        """Validate, then store a new version (with its tags); returns it as stored.

        `weights` is the .npz as bytes, or as a file hashed while it was uploaded: it is checked
        against the spec array by array from that file and stored in chunks, so a file of
        hundreds of megabytes is never held in memory whole.
        """
        for key, value in (tags or {}).items():
            check_tag(key, value)
        check_name(name)
        arch = Architecture.from_spec(spec, self.limits)
        wf = weights if isinstance(weights, WeightsFile) else WeightsFile.from_bytes(weights)
        check_npz(arch, wf, self.max_weight_bytes)
        spec_sha, weights_sha = sha256(canonical_json(spec)), wf.sha256
        totals = arch.totals()
        attempts = 5
        for attempt in range(1, attempts + 1):
            try:
                with self._write() as conn:
                    model_id = self._ensure_model(conn, name, description)
                    number = (
                        conn.execute(
                            sa.update(models)
                            .where(models.c.id == model_id)
                            .values(next_version=models.c.next_version + 1)
                            .returning(models.c.next_version)
                        ).scalar_one()
                        - 1
                    )
                    self._put_blob(conn, wf)
                    version_id = conn.execute(
                        sa.insert(versions)
                        .values(
                            model_id=model_id,
                            number=number,
                            description=description,
                            spec=spec,
                            spec_sha256=spec_sha,
                            weights_sha256=weights_sha,
                            totals=totals,
                            created_at=_now(),
                        )
                        .returning(versions.c.id)
                    ).scalar_one()
                    for key, value in (tags or {}).items():
                        conn.execute(
                            sa.insert(version_tags).values(
                                version_id=version_id, key=key, value=value
                            )
                        )
                    record_event(conn, name, "register", actor, version=number)
                break
            except (IntegrityError, OperationalError):
                # A concurrent writer won a race (the same new model name or blob, or a model
                # deleted meanwhile); nothing of ours was kept, so try again from the start.
                if attempt == attempts:
                    raise
        # Read back outside the retry: the version is committed, and a failed read must not
        # register the same upload again as another version.
        return self.version(name, str(number))

    def _ensure_model(self, conn: Connection, name: str, description: str) -> int:
        found = conn.execute(sa.select(models.c.id).where(models.c.name == name)).scalar()
        if found is not None:
            return found
        insert = _insert(conn).values(name=name, description=description, created_at=_now())
        conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(sa.select(models.c.id).where(models.c.name == name)).scalar_one()

    def _put_blob(self, conn: Connection, wf: WeightsFile) -> None:
        """The file as a blob row and its chunks (PostgreSQL caps a bytea value at 1 GB, and a
        value is read and written whole); nothing when the same content is already stored."""
        stmt = _insert(conn, blobs).values(sha256=wf.sha256, size=wf.size, data=b"")
        stmt = stmt.on_conflict_do_nothing(index_elements=["sha256"]).returning(blobs.c.sha256)
        if conn.execute(stmt).first() is not None:  # a row only when this insert added it
            for seq, chunk in enumerate(wf.chunks()):
                conn.execute(sa.insert(blob_chunks).values(sha256=wf.sha256, seq=seq, data=chunk))

    # -- read --------------------------------------------------------------------------

    def list_models(
        self, limit: int = 50, cursor: str | None = None, tags: list[str] | None = None
    ) -> Page:
        """Models by name; with `tags` (each `key:value` or `key`), only models with a version
        carrying every one of them, and each such model's `tagged_versions`."""
        limit = page_size(limit)
        wanted = [parse_tag_filter(t) for t in tags or []]
        with self._read() as conn:
            q = sa.select(models).order_by(models.c.name).limit(limit + 1)
            if cursor:
                after = decode_cursor(cursor)
                if not isinstance(after, str) or not NAME_RE.match(after):
                    raise Malformed(f"cursor {cursor!r} is not one this server handed out")
                q = q.where(models.c.name > after)
            if wanted:
                q = q.where(
                    sa.exists(self._tagged(wanted).where(versions.c.model_id == models.c.id))
                )
            rows = conn.execute(q).mappings().all()
            items = []
            for r in rows[:limit]:
                model = self._stored_model(conn, r)
                if wanted:
                    tagged = self._tagged(wanted).where(versions.c.model_id == r["id"])
                    numbers = list(conn.execute(tagged.order_by(versions.c.number)).scalars())
                    model = replace(model, tagged_versions=numbers)
                items.append(model)
        return paged(rows, limit, "name", items)

    @staticmethod
    def _tagged(wanted: list[tuple[str, str | None]]) -> sa.Select:
        """The numbers of versions that carry every (key, value or None for any) tag."""
        q = sa.select(versions.c.number)
        for key, value in wanted:
            match = sa.and_(version_tags.c.version_id == versions.c.id, version_tags.c.key == key)
            if value is not None:
                match = sa.and_(match, version_tags.c.value == value)
            q = q.where(sa.exists(sa.select(version_tags.c.key).where(match)))
        return q

    def model(self, name: str) -> StoredModel:
        """A model with all its versions."""
        with self._read() as conn:
            row = self._model_row(conn, name)
            model = self._stored_model(conn, row)
            tags = self._tags(conn, row["id"])
            return replace(
                model,
                versions=[
                    self._stored_version(name, v, model.aliases, tags)
                    for v in conn.execute(
                        sa.select(versions)
                        .where(versions.c.model_id == row["id"])
                        .order_by(versions.c.number)
                    ).mappings()
                ],
            )

    def list_versions(self, name: str, limit: int = 50, cursor: str | None = None) -> Page:
        limit = page_size(limit)
        with self._read() as conn:
            row = self._model_row(conn, name)
            alias_map = self._aliases(conn, row["id"])
            q = (
                sa.select(versions)
                .where(versions.c.model_id == row["id"])
                .order_by(versions.c.number)
                .limit(limit + 1)
            )
            if cursor:
                q = q.where(versions.c.number > _cursor_number(cursor))
            rows = conn.execute(q).mappings().all()
            tags = self._tags(conn, row["id"])
        items = [self._stored_version(name, v, alias_map, tags) for v in rows[:limit]]
        return paged(rows, limit, "number", items)

    def version(self, name: str, ref: str) -> StoredVersion:
        """The version `ref` names (see parse_ref)."""
        with self._read() as conn:
            model_row = self._model_row(conn, name)
            v = self._resolve(conn, model_row, ref)
            return self._stored_version(
                name, v, self._aliases(conn, model_row["id"]), self._tags(conn, model_row["id"])
            )

    def spec(self, name: str, ref: str) -> dict[str, Any]:
        """A version's spec (the data plane loads versions with resolve() and load_file())."""
        with self._read() as conn:
            return self._resolve(conn, self._model_row(conn, name), ref)["spec"]

    def resolve(self, name: str, ref: str | None = None) -> Resolved:
        """Which version `ref` names right now (None: alias `default`, else the newest).

        The answer is good for one request only: aliases move. It runs on every prediction, so
        it is one prepared query; only a miss asks more, to say what is missing.
        """
        parsed = parse_ref(ref)
        row = self._find(name, parsed)
        if row is None:
            with self._read() as conn:
                self._model_row(conn, name)  # no such model: say so
            raise _missing(name, parsed)
        return Resolved(name, *row)

    def version_numbers(self, name: str) -> list[int]:
        """Every version number of a model, oldest first."""
        with self._read() as conn:
            model_id = self._model_row(conn, name)["id"]
            q = sa.select(versions.c.number).where(versions.c.model_id == model_id)
            return list(conn.execute(q.order_by(versions.c.number)).scalars())

    def load_file(self, version: Resolved) -> tuple[dict[str, Any], WeightsFile]:
        """The spec and the verified weights of a resolved version, as a temporary file (on disk
        beyond a megabyte): what loading a model needs without holding the file's bytes too."""
        with self._read() as conn:
            spec = conn.execute(
                sa.select(versions.c.spec).where(versions.c.id == version.id)
            ).scalar()
        what = f"{version.model} version {version.number}"
        if spec is None:
            raise VersionGone(f"{what} was deleted meanwhile")
        digest = version.weights_sha256
        return spec, WeightsFile.spooled(self._blob(digest, what), digest)

    def weights(self, name: str, ref: str) -> tuple[int, bytes, str]:
        """(number, bytes, sha256) of a version's weights file, verified against its checksum."""
        number, digest, _, chunks = self.weights_stream(name, ref)
        return number, b"".join(chunks), digest

    def weights_stream(self, name: str, ref: str) -> tuple[int, str, int, Iterator[bytes]]:
        """(number, sha256, size, chunks) of a version's weights file, read chunk by chunk.

        The chunks are hashed as they go: content that does not match its sha256 raises
        IntegrityFailure at the end, which cuts a response short of its Content-Length.
        """
        with self._read() as conn:
            v = self._resolve(conn, self._model_row(conn, name), ref)
            size = conn.execute(
                sa.select(blobs.c.size).where(blobs.c.sha256 == v["weights_sha256"])
            ).scalar()
        what = f"{name} version {v['number']}"
        if size is None:  # deleted between the two statements (PostgreSQL reads committed data)
            raise VersionGone(f"{what} was deleted meanwhile")
        return v["number"], v["weights_sha256"], size, self._blob(v["weights_sha256"], what)

    def _blob(self, digest: str, what: str) -> Iterator[bytes]:
        """The stored file `digest` (the weights of `what`), verified: its chunks in order,
        hashed as they go, and IntegrityFailure after the last one if they do not match their
        sha256. Each chunk is its own short query: a slow reader holds no connection, and
        memory holds one chunk."""
        h = hashlib.sha256()
        seq = 0
        while True:
            with self._read() as conn:
                data = conn.execute(
                    sa.select(blob_chunks.c.data).where(
                        blob_chunks.c.sha256 == digest, blob_chunks.c.seq == seq
                    )
                ).scalar()
            if data is None:
                if seq == 0:
                    raise VersionGone(f"the weights of {what} were deleted meanwhile")
                break
            h.update(data)
            yield bytes(data)
            seq += 1
        if h.hexdigest() != digest:
            raise IntegrityFailure(f"the stored weights of {what} do not match their sha256")

    # -- delete and alias --------------------------------------------------------------

    def delete_version(self, name: str, ref: str, actor: str = ANONYMOUS) -> None:
        with self._write() as conn:
            model_row = self._model_row(conn, name, lock=True)
            v = self._resolve(conn, model_row, ref)
            held = [a for a, n in self._aliases(conn, model_row["id"]).items() if n == v["number"]]
            if held:
                raise Conflict(
                    f"{name} version {v['number']} is what alias {', '.join(sorted(held))} "
                    f"points at: move or delete the alias first"
                )
            conn.execute(sa.delete(versions).where(versions.c.id == v["id"]))
            self._drop_orphan_blobs(conn, [v["weights_sha256"]])
            record_event(conn, name, "delete_version", actor, version=v["number"])

    def delete_model(self, name: str, actor: str = ANONYMOUS) -> None:
        """Delete a model with its versions, aliases and tags; its history stays."""
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            held = conn.execute(
                sa.select(versions.c.number, versions.c.weights_sha256)
                .where(versions.c.model_id == row["id"])
                .order_by(versions.c.number)
            ).all()
            alias_map = self._aliases(conn, row["id"])
            conn.execute(sa.delete(aliases).where(aliases.c.model_id == row["id"]))
            conn.execute(sa.delete(versions).where(versions.c.model_id == row["id"]))
            conn.execute(sa.delete(models).where(models.c.id == row["id"]))
            self._drop_orphan_blobs(conn, [sha for _, sha in held])
            record_event(
                conn,
                name,
                "delete_model",
                actor,
                detail={"versions": [n for n, _ in held], "aliases": alias_map},
            )

    def set_alias(
        self, name: str, alias: str, number: int, actor: str = ANONYMOUS, force: bool = False
    ) -> AliasMove:
        """Point `alias` at version `number`. Moving it to a version whose input shape or number
        of classes differs from the one it points at now is a Conflict naming the difference,
        unless `force` (which the history then records)."""
        check_alias(alias)
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            v = self._resolve(conn, row, str(number))
            current = (
                conn.execute(
                    sa.select(versions.c.number, versions.c.spec)
                    .join(aliases, aliases.c.version_id == versions.c.id)
                    .where(aliases.c.model_id == row["id"], aliases.c.name == alias)
                )
                .mappings()
                .first()
            )
            previous = current["number"] if current else None
            differences = (
                interface_differences(current["spec"], v["spec"])
                if current and previous != v["number"]
                else []
            )
            if differences and not force:
                raise Conflict(
                    f"alias {alias!r} of {name} points at version {previous}; moving it to "
                    f"version {v['number']} would break its clients: {'; '.join(differences)}. "
                    f"Add ?force=true to move it anyway"
                )
            values = {"version_id": v["id"], "updated_at": _now()}
            if current:
                conn.execute(
                    sa.update(aliases)
                    .where(aliases.c.model_id == row["id"], aliases.c.name == alias)
                    .values(**values)
                )
            else:
                conn.execute(sa.insert(aliases).values(model_id=row["id"], name=alias, **values))
            record_event(
                conn,
                name,
                "set_alias",
                actor,
                version=v["number"],
                alias=alias,
                previous_version=previous,
                detail={"forced": differences} if differences else None,
            )
        return AliasMove(name, alias, v["number"], previous)

    def delete_alias(self, name: str, alias: str, actor: str = ANONYMOUS) -> None:
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            previous = self._aliases(conn, row["id"]).get(alias)
            if previous is None:
                raise NotFound(f"model {name} has no alias {alias!r}")
            conn.execute(
                sa.delete(aliases).where(aliases.c.model_id == row["id"], aliases.c.name == alias)
            )
            record_event(conn, name, "delete_alias", actor, alias=alias, previous_version=previous)

    # -- metadata: tags and descriptions -------------------------------------------------

    def set_tag(
        self, name: str, ref: str, key: str, value: str, actor: str = ANONYMOUS
    ) -> dict[str, str]:
        """Set one tag of a version; returns all its tags."""
        check_tag(key, value)
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            v = self._resolve(conn, row, ref)
            old = conn.execute(
                sa.select(version_tags.c.value).where(
                    version_tags.c.version_id == v["id"], version_tags.c.key == key
                )
            ).scalar()
            if old is None:
                conn.execute(
                    sa.insert(version_tags).values(version_id=v["id"], key=key, value=value)
                )
            else:
                conn.execute(
                    sa.update(version_tags)
                    .where(version_tags.c.version_id == v["id"], version_tags.c.key == key)
                    .values(value=value)
                )
            record_event(
                conn,
                name,
                "set_tag",
                actor,
                version=v["number"],
                detail={"key": key, "value": value, "previous_value": old},
            )
            return self._tags(conn, row["id"]).get(v["id"], {})

    def delete_tag(self, name: str, ref: str, key: str, actor: str = ANONYMOUS) -> None:
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            v = self._resolve(conn, row, ref)
            old = conn.execute(
                sa.select(version_tags.c.value).where(
                    version_tags.c.version_id == v["id"], version_tags.c.key == key
                )
            ).scalar()
            if old is None:
                raise NotFound(f"{name} version {v['number']} has no tag {key!r}")
            conn.execute(
                sa.delete(version_tags).where(
                    version_tags.c.version_id == v["id"], version_tags.c.key == key
                )
            )
            record_event(
                conn,
                name,
                "delete_tag",
                actor,
                version=v["number"],
                detail={"key": key, "previous_value": old},
            )

    def set_description(
        self, name: str, description: str, ref: str | None = None, actor: str = ANONYMOUS
    ) -> None:
        """Edit the description of a model (ref None) or of one of its versions."""
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            if ref is None:
                old, number = row["description"], None
                conn.execute(
                    sa.update(models)
                    .where(models.c.id == row["id"])
                    .values(description=description)
                )
            else:
                v = self._resolve(conn, row, ref)
                old, number = v["description"], v["number"]
                conn.execute(
                    sa.update(versions)
                    .where(versions.c.id == v["id"])
                    .values(description=description)
                )
            record_event(
                conn,
                name,
                "set_description",
                actor,
                version=number,
                detail={"description": description, "previous": old},
            )

    # -- diff ----------------------------------------------------------------------------

    def diff(self, name: str, from_ref: str, to_ref: str) -> VersionDiff:
        """Version `from_ref` against `to_ref`, layer by layer (see diff.py)."""
        with self._read() as conn:
            row = self._model_row(conn, name)
            a, b = self._resolve(conn, row, from_ref), self._resolve(conn, row, to_ref)

        def arrays(v: sa.RowMapping) -> Callable[[], dict[str, Any]]:
            # stored weights passed the unpack limit in force when registered
            return lambda: load_npz(self.weights(name, str(v["number"]))[1], max_bytes=None)

        old, new = Architecture.from_spec(a["spec"]), Architecture.from_spec(b["spec"])
        layers = layer_diff(
            old, new, arrays(a), arrays(b), same_weights=a["weights_sha256"] == b["weights_sha256"]
        )
        return VersionDiff(name, a["number"], b["number"], layers, old.totals(), new.totals())

    # -- history -------------------------------------------------------------------------

    def history(
        self,
        name: str,
        limit: int = 50,
        cursor: str | None = None,
        action: str | None = None,
        alias: str | None = None,
    ) -> Page:
        """Every write to model `name`, newest first, also after the model was deleted; only
        `action`s, and only those about `alias`, when given."""
        check_name(name)
        if action is not None and action not in ACTIONS:
            raise Malformed(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        limit = page_size(limit)
        before = None
        if cursor:
            before = _cursor_number(cursor)
        with self._read() as conn:
            rows = read_events(conn, name, limit + 1, before, action, alias)
            if not rows and before is None:
                exists = conn.execute(sa.select(models.c.id).where(models.c.name == name)).first()
                if exists is None:
                    raise NotFound(f"no model named {name!r}, now or in the history")
        return paged(rows, limit, "id", [stored_event(r) for r in rows[:limit]])

    # -- serving state ------------------------------------------------------------------

    def serving_state(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The model's stored batching config (None: the server's defaults) and repository state
        ("loaded", "unloaded", or None: loaded on demand)."""
        with self._read() as conn:
            model_id = self._model_row(conn, name)["id"]
            row = conn.execute(
                sa.select(model_configs.c.config, model_configs.c.state).where(
                    model_configs.c.model_id == model_id
                )
            ).first()
        return (row.config, row.state) if row is not None else (None, None)

    def set_model_config(self, name: str, config: dict[str, Any], actor: str = ANONYMOUS) -> None:
        """Store the model's batching config (replacing any before it), with its history event
        in the same transaction."""
        with self._write() as conn:
            model_id = self._model_row(conn, name)["id"]
            previous = conn.execute(
                sa.select(model_configs.c.config).where(model_configs.c.model_id == model_id)
            ).scalar()
            self._upsert_serving(conn, model_id, config=config)
            record_set_config(conn, name, actor, config, previous)

    def set_model_state(self, name: str, state: str | None) -> None:
        """Store the model's repository state: "loaded", "unloaded" or None (on demand)."""
        self._set_serving(name, state=state)

    def model_states(self) -> dict[str, str]:
        """Every model with a repository state, and that state."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(models.c.name, model_configs.c.state)
                .join(model_configs, model_configs.c.model_id == models.c.id)
                .where(model_configs.c.state.is_not(None))
            ).all()
        return {name: state for name, state in rows}

    def _set_serving(self, name: str, **values: Any) -> None:
        with self._write() as conn:
            self._upsert_serving(conn, self._model_row(conn, name)["id"], **values)

    @staticmethod
    def _upsert_serving(conn: Connection, model_id: int, **values: Any) -> None:
        values["updated_at"] = _now()
        stmt = _insert(conn, model_configs).values(model_id=model_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["model_id"], set_=values))

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- helpers -----------------------------------------------------------------------

    def _model_row(self, conn: Connection, name: str, lock: bool = False) -> sa.RowMapping:
        """The model's row; with `lock`, held until the transaction ends (PostgreSQL: FOR
        UPDATE; SQLite's BEGIN IMMEDIATE already serialises writers), so that concurrent writes
        to one model, and their history events, happen one after the other."""
        if not _findable(name):
            raise NotFound(f"no model named {name!r}")
        q = sa.select(models).where(models.c.name == name)
        row = conn.execute(q.with_for_update() if lock else q).mappings().first()
        if row is None:
            raise NotFound(f"no model named {name!r}")
        return row

    def _find(self, name: str, ref: Ref, conn: Connection | None = None) -> Any:
        """The one lookup of a parsed ref, or None. Without `conn`: Resolved's fields, by the
        prepared statement; with it: the whole version row, inside conn's transaction."""
        if ref.lookup is None or not _findable(name):
            return None
        params = {"name": name, "value": ref.value}
        if conn is None:
            return self._resolving[ref.lookup].first(**params)
        return conn.execute(_ROW[ref.lookup], params).mappings().first()

    def _resolve(
        self, conn: Connection, model_row: sa.RowMapping, ref: str | None
    ) -> sa.RowMapping:
        """The version row `ref` names (see parse_ref), in conn's transaction; NotFound if none."""
        parsed = parse_ref(ref)
        row = self._find(model_row["name"], parsed, conn)
        if row is None:
            raise _missing(model_row["name"], parsed)
        return row

    def _aliases(self, conn: Connection, model_id: int) -> dict[str, int]:
        q = (
            sa.select(aliases.c.name, versions.c.number)
            .join(versions, versions.c.id == aliases.c.version_id)
            .where(aliases.c.model_id == model_id)
            .order_by(aliases.c.name)
        )
        return {a: n for a, n in conn.execute(q)}

    def _stored_model(self, conn: Connection, row: sa.RowMapping) -> StoredModel:
        stats = conn.execute(
            sa.select(sa.func.count(), sa.func.max(versions.c.number)).where(
                versions.c.model_id == row["id"]
            )
        ).one()
        return StoredModel(
            name=row["name"],
            description=row["description"],
            created_at=utc(row["created_at"]),
            version_count=stats[0],
            latest_version=stats[1],
            aliases=self._aliases(conn, row["id"]),
        )

    def _tags(self, conn: Connection, model_id: int) -> dict[int, dict[str, str]]:
        """Every tag of a model's versions: version id → {key: value}."""
        q = (
            sa.select(version_tags.c.version_id, version_tags.c.key, version_tags.c.value)
            .join(versions, versions.c.id == version_tags.c.version_id)
            .where(versions.c.model_id == model_id)
            .order_by(version_tags.c.key)
        )
        out: dict[int, dict[str, str]] = {}
        for version_id, key, value in conn.execute(q):
            out.setdefault(version_id, {})[key] = value
        return out

    @staticmethod
    def _stored_version(
        model: str, v: sa.RowMapping, alias_map: dict[str, int], tags: dict[int, dict[str, str]]
    ) -> StoredVersion:
        return StoredVersion(
            model=model,
            number=v["number"],
            description=v["description"],
            created_at=utc(v["created_at"]),
            spec=v["spec"],
            spec_sha256=v["spec_sha256"],
            weights_sha256=v["weights_sha256"],
            totals=v["totals"],
            aliases=sorted(a for a, n in alias_map.items() if n == v["number"]),
            tags=tags.get(v["id"], {}),
        )

    def _drop_orphan_blobs(self, conn: Connection, shas: list[str]) -> None:
        for digest in set(shas):
            still_used = conn.execute(
                sa.select(versions.c.id).where(versions.c.weights_sha256 == digest).limit(1)
            ).first()
            if still_used is None:
                conn.execute(sa.delete(blob_chunks).where(blob_chunks.c.sha256 == digest))
                conn.execute(sa.delete(blobs).where(blobs.c.sha256 == digest))


def _missing(name: str, ref: Ref) -> NotFound:
    return NotFound(f"model {name} has {ref.missing}")


def _insert(conn: Connection, table: sa.Table = models):  # noqa: ANN202 - dialect-specific
    """INSERT with ON CONFLICT support for the connection's dialect (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def interface_differences(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[str]:
    """What a client of one version would find different in the other: the input shape and the
    number of classes (or, for outputs that are not class vectors, the output shape)."""
    old, new = Architecture.from_spec(old_spec), Architecture.from_spec(new_spec)
    out = []
    if list(old.input_shape) != list(new.input_shape):
        out.append(f"input shape {_dims(old.input_shape)} → {_dims(new.input_shape)}")
    if old.num_classes is not None and new.num_classes is not None:
        if old.num_classes != new.num_classes:
            out.append(f"number of classes {old.num_classes} → {new.num_classes}")
    elif list(old.output_shape) != list(new.output_shape):
        out.append(f"output shape {_dims(old.output_shape)} → {_dims(new.output_shape)}")
    return out


def _dims(shape: Any) -> str:
    return "×".join(str(d) for d in shape)
