"""The `convserve` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .architecture import Architecture
from .errors import ConvserveError, SpecError
from .render import render_table
from .weights import dump_npz, load_npz


def _read_json(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError([], detail=f"{path} is not valid JSON: {err}") from None


def _report(err: SpecError) -> int:
    print(
        f"error: {err.detail}" if not err.problems else f"error: {err.headline}",
        file=sys.stderr,
    )
    for p in err.problems:
        print(f"  - {p.message}", file=sys.stderr)
    return 2


def _reader_gone() -> int:
    """Standard output's reader closed it (`convserve inspect … | head`): exit quietly with 1.

    As the Python docs advise (signal module, "Note on SIGPIPE"), standard output is pointed at
    devnull first, so that the interpreter's own flush at exit does not fail again with a
    traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def cmd_inspect(args: argparse.Namespace) -> int:
    arch = Architecture.from_spec(_read_json(args.spec))
    if args.weights:
        arch.check_weights(load_npz(Path(args.weights).read_bytes()))
    table = arch.table()
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(render_table(table, explain=args.explain))
        if args.weights:
            print(f"weights: {args.weights} matches the spec")
    return 0


def cmd_init_weights(args: argparse.Namespace) -> int:
    arch = Architecture.from_spec(_read_json(args.spec))
    Path(args.output).write_bytes(dump_npz(arch.random_weights(args.seed)))
    print(f"wrote {args.output}: He-initialised weights for {len(arch.weight_specs())} arrays")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from .config import Settings
    from .registry.db import make_engine
    from .registry.migrate import current_revision, upgrade

    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=True)
    print(f"database {url} is at revision {current_revision(engine)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .onnx_import import (
        complete_spec,
        external_locations,
        import_onnx,
        parse_labels,
        unpack_upload,
    )

    src = Path(args.model)
    data, external = unpack_upload(
        src.read_bytes(), {Path(p).name: Path(p).read_bytes() for p in args.data or []}
    )
    for location in external_locations(data) - set(external):
        # What the exporter wrote beside the model, as `--data` would name it; only a plain file
        # name inside the model's folder, never a path the model makes up.
        beside = src.parent / location
        if Path(location).name == location and beside.is_file():
            external[location] = beside.read_bytes()
    spec, arrays = import_onnx(data, external)
    try:
        labels = parse_labels(Path(args.labels).read_text("utf-8")) if args.labels else None
    except ValueError as err:
        raise SpecError([], detail=f"{args.labels}: {err}") from None
    preprocess = _read_json(args.preprocess) if args.preprocess else None
    spec = complete_spec(spec, labels, preprocess)
    arch = Architecture.from_spec(spec)
    arch.check_weights(arrays)
    prefix = Path(args.output) if args.output else src.with_suffix("")
    spec_path, weights_path = prefix.with_suffix(".json"), prefix.with_suffix(".npz")
    spec_path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    weights_path.write_bytes(dump_npz(arrays))
    print(render_table(arch.table()))
    print(f"wrote {spec_path} and {weights_path}")
    return 0


#: The actor the history names for what `convserve db seed` registers.
SEED = "convserve-db-seed"


def cmd_db_seed(args: argparse.Namespace) -> int:
    """Register the demo model into an empty registry (what `make serve` does after migrating)."""
    from .config import Settings
    from .registry.db import make_engine
    from .registry.store import Registry

    settings = Settings.from_env()
    registry = Registry(make_engine(settings.database_url), settings.limits)
    existing = registry.list_models(limit=1).items
    if existing:
        print(f"the registry already holds models ({existing[0].name}, …): nothing seeded")
        return 0
    spec = _read_json(args.spec)
    version = registry.register(
        args.name, spec, Path(args.weights).read_bytes(), spec.get("description", ""), actor=SEED
    )
    registry.set_alias(args.name, args.alias, version.number, actor=SEED)
    print(f"registered {args.name} version {version.number} as {args.alias!r}")
    return 0


def _token_file(args: argparse.Namespace) -> Path:
    path = args.file or os.environ.get("CONVSERVE_TOKEN_FILE")
    if not path:
        raise ConvserveError("name the token file with --file or CONVSERVE_TOKEN_FILE")
    return Path(path)


def cmd_token_add(args: argparse.Namespace) -> int:
    """Draw a token, store only its hash, print it once."""
    from .tokens import RESERVED, Entry, TokenFileError, editing, hash_token, new_token, parse

    path = _token_file(args)
    token = new_token()
    try:
        with editing(path) as entries:
            if args.name in RESERVED or any(e.name == args.name for e in entries):
                raise TokenFileError(
                    f"{path} already has a token named {args.name!r}, or the name is reserved: "
                    f"remove it first or pick another name"
                )
            added = Entry(args.name, args.role, hash_token(token))
            parse(f"{added.name} {added.role} {added.sha256}")  # the name and role are valid
            entries.append(added)
    except TokenFileError as err:
        raise ConvserveError(str(err)) from None
    print(token)
    print(
        f"added token {args.name!r} with role {args.role} to {path} (only its SHA-256 is "
        f"stored: keep the token now, it cannot be shown again)",
        file=sys.stderr,
    )
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from .tokens import TokenFileError, read_file

    try:
        entries = read_file(_token_file(args))
    except TokenFileError as err:
        raise ConvserveError(str(err)) from None
    for e in entries:
        print(f"{e.name}\t{e.role}")
    return 0


def cmd_token_remove(args: argparse.Namespace) -> int:
    from .tokens import TokenFileError, editing

    path = _token_file(args)
    try:
        with editing(path) as entries:
            kept = [e for e in entries if e.name != args.name]
            if len(kept) == len(entries):
                raise TokenFileError(f"{path} has no token named {args.name!r}")
            entries[:] = kept
    except TokenFileError as err:
        raise ConvserveError(str(err)) from None
    print(f"removed token {args.name!r}: servers refuse it from their next request on")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run gunicorn with the project's config (what `make serve` does after migrating)."""
    from .registry.migrate import migrations_dir

    conf = migrations_dir().parent / "deploy" / "gunicorn.conf.py"
    argv = ["gunicorn", "-c", str(conf), "service.wsgi:app"]
    os.execvp(argv[0], argv)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convserve", description="Register, inspect and serve convolutional networks."
    )
    parser.add_argument("--version", action="version", version=f"convserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "inspect",
        help="validate a spec and print its layer table",
        description="Validate an architecture spec (JSON; '-' reads stdin) and print per-layer "
        "shapes, weights, params, multiply-adds and receptive fields.",
    )
    p.add_argument("spec", help="the spec JSON file, or - for standard input")
    p.add_argument("--weights", metavar="NPZ", help="also check this .npz against the spec")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--explain", action="store_true", help="add a plain-words line per layer")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "init-weights",
        help="write seeded random (He) weights for a spec, for dry runs",
        description="Write an .npz of He-initialised weights (zero biases, identity batch-norm "
        "statistics) that fits the spec: for trying the service before a model is trained.",
    )
    p.add_argument("spec", help="the spec JSON file, or - for standard input")
    p.add_argument("-o", "--output", required=True, help="the .npz to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_init_weights)

    p = sub.add_parser(
        "import",
        help="convert an ONNX model into a spec and weights",
        description="Convert an ONNX model (opset 11 or newer) into a convserve spec (.json) and "
        "weights (.npz), print its layer table; nodes convserve cannot run are named.",
    )
    p.add_argument("model", help="the .onnx file, or a .zip of it with its external data")
    p.add_argument(
        "--data",
        action="append",
        metavar="FILE",
        help="an external data file of the model (default: the files it names, from its folder)",
    )
    p.add_argument("--labels", metavar="FILE", help="class names: a JSON list or one per line")
    p.add_argument(
        "--preprocess", metavar="JSON", help="a JSON file of the image preprocessing (as in specs)"
    )
    p.add_argument("-o", "--output", help="path prefix of the .json and .npz (default: beside it)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("serve", help="run the HTTP service with gunicorn (HOST, PORT, ...)")
    p.set_defaults(func=cmd_serve)

    from .tokens import ROLES

    tok = sub.add_parser(
        "token",
        help="named API tokens with roles (the token file)",
        description="Manage the token file the server reads (CONVSERVE_TOKEN_FILE, re-read on "
        "change): each token has a name (the actor in the history and the access log) and a "
        "role: read < predict < write < admin.",
    ).add_subparsers(dest="token", required=True)
    p = tok.add_parser("add", help="create a token, print it once, store its hash")
    p.add_argument("name", help="who or what uses it, e.g. ci or alice")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--file", help="the token file (default: $CONVSERVE_TOKEN_FILE)")
    p.set_defaults(func=cmd_token_add)
    p = tok.add_parser("list", help="names and roles (the tokens themselves are not stored)")
    p.add_argument("--file", help="the token file (default: $CONVSERVE_TOKEN_FILE)")
    p.set_defaults(func=cmd_token_list)
    p = tok.add_parser("remove", help="revoke a token by name")
    p.add_argument("name")
    p.add_argument("--file", help="the token file (default: $CONVSERVE_TOKEN_FILE)")
    p.set_defaults(func=cmd_token_remove)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    p = db.add_parser("upgrade", help="migrate DATABASE_URL to the newest schema")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser(
        "seed",
        help="register the demo model when the registry is empty",
        description="Register a model (by default the trained digits demo) as version 1 with an "
        "alias, only when the registry holds no models at all.",
    )
    p.add_argument("--spec", default="models/digits.json")
    p.add_argument("--weights", default="models/digits.npz")
    p.add_argument("--name", default="digits")
    p.add_argument("--alias", default="production")
    p.set_defaults(func=cmd_db_seed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that has gone shows here, not in the flush at exit
        return status
    except BrokenPipeError:
        return _reader_gone()
    except SpecError as err:
        return _report(err)
    except ConvserveError as err:
        print(f"error: {err.detail}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
