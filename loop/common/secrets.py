"""Which config keys hold secrets, and how to keep them out of command lines, logs and saved configs (pure).

A token on a command line is visible to every user of the machine (`ps`) and is written to disk by Hydra
(runs/hydra/**/.hydra/overrides.yaml); secrets come from the environment or from a file instead, and child
processes get them through their environment.
"""

from __future__ import annotations

SECRET_WORDS = ("api_key", "token", "password", "secret")
API_KEY_ENV = "LABEL_STUDIO_API_KEY"


def is_secret_key(key: str) -> bool:
    """Does this dotted config key (e.g. labelstudio.api_key) name a secret?"""
    last = key.lstrip("+~").split(".")[-1].lower()
    if last.endswith("_file"):
        return False  # where a secret is kept (labelstudio.api_key_file), not the secret
    return any(word in last for word in SECRET_WORDS)


def secret_overrides(overrides: list[str]) -> list[str]:
    """The keys of command-line overrides that set a secret to a value (null or empty ones are harmless)."""
    found = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and is_secret_key(key) and value.strip() not in ("", "null", "None"):
            found.append(key.lstrip("+~"))
    return found


def without_secrets(overrides: list[str]) -> list[str]:
    """The overrides minus any that sets a secret (what may be passed on to a child's command line)."""
    return [o for o in overrides if not is_secret_key(o.partition("=")[0])]


def redact(node):
    """A plain config (dicts and lists) with every secret value replaced by ***."""
    if isinstance(node, dict):
        return {k: ("***" if is_secret_key(str(k)) and v else redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v) for v in node]
    return node
