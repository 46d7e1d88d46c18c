"""`securepipe keys init | list | rotate | rewrap | destroy | seal`."""

from __future__ import annotations

import argparse
import json

from securepipe.cli import render
from securepipe.cli.session import load, spark_session
from securepipe.config import load_config
from securepipe.crypto.keyring import Keyring
from securepipe.pipeline.keys import change_keys

__all__ = ["keys"]


def keys(args: argparse.Namespace) -> int:
    """List the keys, or change them (alone on the lakehouse)."""
    loaded = load(args)
    if args.action == "list":
        keyring = Keyring(loaded.cfg.keystore)
        if args.json:
            print(json.dumps({"keys": keyring.describe()}, sort_keys=True, default=str))
        else:
            print("\n".join(render.keys_lines(keyring)))
        return 0
    change = change_keys(
        loaded.cfg,
        args.action,
        lambda: spark_session(loaded),
        name=args.name,
        version=args.version,
        new_store=load_config(args.to).keystore if args.to else None,
    )
    if args.json:
        doc = {"action": args.action, "done": change.lines, "keys": change.keyring.describe()}
        print(json.dumps(doc, sort_keys=True, default=str))
    else:
        print("\n".join([*change.lines, *render.keys_lines(change.keyring)]))
    return 0
