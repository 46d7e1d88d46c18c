"""`securepipe keys init | list | rotate | rewrap | destroy | seal`."""

from __future__ import annotations

import argparse

from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.config import load_config
from securepipe.crypto.keyring import Keyring
from securepipe.pipeline.keys import change_keys

__all__ = ["register"]


def keys(args: argparse.Namespace) -> int:
    """List the keys, or change them (alone on the lakehouse)."""
    loaded = load(args)
    if args.action == "list":
        print("\n".join(render.keys_lines(Keyring(loaded.cfg.keystore))))
        return 0
    change = change_keys(
        loaded.cfg,
        args.action,
        lambda: spark_session(loaded),
        name=args.name,
        version=args.version,
        new_store=load_config(args.to).keystore if args.to else None,
    )
    print("\n".join([*change.lines, *render.keys_lines(change.keyring)]))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `keys`."""
    p = sub.add_parser("keys", parents=[common], help="manage data keys")
    p.add_argument(
        "action",
        choices=["init", "list", "rotate", "rewrap", "destroy", "seal"],
        help="init: create the master key and data keys; list; rotate NAME; rewrap --to CONFIG; "
        "destroy NAME --version N; seal a keyring written before keyrings were sealed",
    )
    p.add_argument("name", nargs="?", help="key to rotate or destroy")
    p.add_argument("--to", help="rewrap: a config whose keystore: names the new KEK")
    p.add_argument("--version", type=int, help="destroy: the version to destroy")
    p.set_defaults(func=keys)
