"""Comparing configs: a run's saved `config.json` against the config a program is given.

`check_run_config` is what every program that reads a finished run (export, evaluate) calls before
loading weights: another model config would load nothing but a page of mismatching weight arrays,
another seed or noise rate would silently pair weights with the wrong data. It names the keys.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

IGNORED_KEYS = ("verbose",)  # presentation only: may differ between a run and its resume


def flatten_config(config) -> dict:
    """Dotted key -> value (JSON types), without the ignored keys."""
    tree = config.to_dict() if hasattr(config, "to_dict") else config
    tree = json.loads(json.dumps(tree, default=str))  # tuples -> lists, as config.json stores them
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            elif name not in IGNORED_KEYS:
                flat[name] = value

    walk("", tree)
    return flat


def config_differences(saved, current) -> list:
    """[(key, saved value, current value)] for every key that differs (missing keys read as absent)."""
    old, new = flatten_config(saved), flatten_config(current)
    missing = "<absent>"
    return [(key, old.get(key, missing), new.get(key, missing))
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def check_run_config(config, workdir: str, *, only: Optional[Sequence[str]] = None,
                     allowed: Sequence[str] = ("distribution.",), remedy: str = "") -> None:
    """Refuses `config` when it differs from the run's `workdir/config.json`, naming the keys.

    Args:
      only: compare only keys starting with one of these prefixes (None: every key).
      allowed: key prefixes that may differ (e.g. how the run was distributed).
      remedy: what to do instead (ends the message).

    Raises:
      ValueError: a differing key, or a config.json that cannot be read; FileNotFoundError: no run there.
    """
    from tf_twostage.config.base import load_run_config  # pylint: disable=import-outside-toplevel

    saved = load_run_config(workdir)

    def compared(key):
        return ((only is None or any(key.startswith(prefix) for prefix in only))
                and not any(key.startswith(prefix) for prefix in allowed))

    differences = [difference for difference in config_differences(saved, config) if compared(difference[0])]
    if differences:
        shown = "; ".join(f"{key}: {old!r} in the run, {new!r} given" for key, old, new in differences[:12])
        more = f" (and {len(differences) - 12} more)" if len(differences) > 12 else ""
        raise ValueError(
            f"the config does not match the run in {workdir} ({os.path.join(workdir, 'config.json')}): "
            f"{shown}{more}. {remedy or 'Give the config the run was trained with'}"
        )
