"""JSON-schema checks of the config and tables files with messages a reader can act on: the key path, the unknown
key and the nearest known one, the allowed values, never a dump of the schema or a raw regular expression."""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name``, if any is close (a typo, not another word)."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    near = nearest(name, known)
    return f"; did you mean {near!r}?" if near else ""


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return target
    return node


def _known_keys(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[str]:
    """The property names a schema node defines, through ``$ref`` and ``allOf``."""
    node = _resolve(node, root)
    keys = list(node.get("properties", {}))
    for part in node.get("allOf", []):
        keys += [k for k in _known_keys(part, root) if k not in keys]
    return keys


def _path(error) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "top level"


def _describe(error, root: Mapping[str, Any]) -> str:
    where = _path(error)
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, Mapping):
        known = _known_keys(error.schema, root)
        if error.validator == "additionalProperties" and isinstance(error.schema.get("additionalProperties"),
                                                                    Mapping):
            return f"{where}: {error.message}"  # a mapping of free names (recipes) whose value is wrong
        unknown = [k for k in error.instance if k not in known]
        return "; ".join(f"{where}: unknown key {key!r}{did_you_mean(key, known)} (valid keys: {', '.join(known)})"
                         for key in unknown) or f"{where}: {error.message}"
    if error.validator == "enum":
        allowed = [str(v) for v in error.validator_value]
        return (f"{where}: {error.instance!r} is not one of {', '.join(allowed)}"
                f"{did_you_mean(error.instance, allowed)}")
    if error.validator == "pattern":
        what = error.schema.get("description", "")
        return f"{where}: {error.instance!r} is not a valid name" + (f" ({what})" if what else "")
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def schema_errors(document: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every violation of ``schema`` by ``document``, one readable line each, in key-path order."""
    import jsonschema  # imported here: only needed when validating

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(error, schema) for error in errors]


__all__ = ["did_you_mean", "nearest", "schema_errors"]
