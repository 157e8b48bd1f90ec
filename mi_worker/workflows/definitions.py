"""Workflow definitions as data: load the shipped file (plus a hospital's override), check it
against the catalogue at start, and build each step's input from its template.

Why data and a check at start rather than code: the undo rules are where HIS developers go
wrong (a settlement undone but its fee details left, a timed-out 2207 sent again), so every
undo must be the catalogue's cancel code of its step, 2601 may stand only beside a code 2601
can reverse, and a step may only read an output an earlier step declares it produces. A
definition that breaks any of these stops the worker with every problem listed, instead of
failing half-way through somebody's settlement.

Templates are plain JSON: a string ``"${input.a.b}"`` (the whole string) is replaced by that
value, ``"${…|text}"`` gives a default, ``{"$from": "${…}", "k": v}`` copies an object and sets
``k``. Sources: ``input`` (the workflow input), ``steps.<name>.output`` / ``steps.<name>.input``
(earlier steps), ``self.output`` / ``self.input`` (in an undo: the step it undoes).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mi_worker.gateway import catalog

_REF = re.compile(r"^\$\{([A-Za-z0-9_.]+)(?:\|(.*))?\}$", re.S)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MISSING = object()


class DefinitionError(ValueError):
    """A workflow definition that must not run; the message lists every problem."""


class InputError(ValueError):
    """A workflow input a step's template cannot be built from (the HIS gets -1001)."""


@dataclass(frozen=True)
class Undo:
    code: str
    input: Any


@dataclass(frozen=True)
class Step:
    name: str
    code: str
    input: Any
    produces: Tuple[str, ...] = ()
    undo: Optional[Undo] = None
    undo_uncertain: Optional[str] = None
    no_undo: str = ""
    optional: bool = False
    check: Optional[Dict[str, str]] = None
    timeout: int = 60
    retries: int = 3

    @property
    def kind(self) -> str:
        return catalog.kind(self.code)


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    steps: Tuple[Step, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        """The snapshot stored on the workflow row: a definition changed later never alters
        a workflow already running (any worker continues it with what it started with)."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Workflow:
        raw = json.loads(text)
        steps = tuple(Step(**dict(s, produces=tuple(s.get("produces") or ()),
                                  undo=Undo(**s["undo"]) if s.get("undo") else None))
                      for s in raw["steps"])
        return Workflow(raw["name"], raw.get("description", ""), steps)


# -- loading ------------------------------------------------------------------------------
def load(override: str = "") -> Dict[str, Workflow]:
    """The shipped definitions, then the override file's (same shape) replacing by name.
    Raises DefinitionError naming the file and every problem."""
    text = resources.files("mi_worker.workflows").joinpath("definitions.json").read_text(
        encoding="utf-8")
    raw = _parse(text, "the shipped definitions.json")
    if override:
        path = Path(override)
        try:
            extra = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DefinitionError(f"workflows.file {override}: cannot be read ({exc})") from None
        raw.update(_parse(extra, f"workflows.file {override}"))
    return parse_all(raw)


def _parse(text: str, where: str) -> Dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DefinitionError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: must be a JSON object of workflows by name")
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def parse_all(raw: Mapping[str, Any]) -> Dict[str, Workflow]:
    out: Dict[str, Workflow] = {}
    problems: List[str] = []
    for name, body in raw.items():
        try:
            out[name] = parse_one(name, body)
        except DefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise DefinitionError("invalid workflow definitions:\n  " + "\n  ".join(problems))
    return out


def parse_one(name: str, body: Any) -> Workflow:
    """One workflow from its JSON body, checked (DefinitionError lists every problem)."""
    problems: List[str] = []
    if not _NAME.match(name):
        problems.append(f"{name!r}: a workflow name is lower-case letters, digits and _")
    if not isinstance(body, dict) or not isinstance(body.get("steps"), list) \
            or not body["steps"]:
        raise DefinitionError(f"{name}: needs a non-empty list 'steps'")
    steps: List[Step] = []
    for i, s in enumerate(body["steps"], 1):
        where = f"{name} step {i}"
        if not isinstance(s, dict):
            problems.append(f"{where}: must be an object")
            continue
        known = {"name", "code", "input", "produces", "undo", "undo_uncertain", "no_undo",
                 "optional", "check", "timeout", "retries"}
        for k in sorted(set(s) - known):
            problems.append(f"{where}: unknown key {k!r} (known: {', '.join(sorted(known))})")
        undo = s.get("undo")
        try:
            step = Step(name=str(s.get("name") or ""), code=catalog.normalize(s.get("code", "")),
                        input=s.get("input", {}), produces=tuple(s.get("produces") or ()),
                        undo=Undo(catalog.normalize(undo.get("code", "")), undo.get("input", {}))
                        if isinstance(undo, dict) else None,
                        undo_uncertain=s.get("undo_uncertain"), no_undo=str(s.get("no_undo", "")),
                        optional=bool(s.get("optional", False)), check=s.get("check"),
                        timeout=int(s.get("timeout", 60)), retries=int(s.get("retries", 3)))
        except (TypeError, ValueError, AttributeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        problems += _check_step(where, step, steps)
        steps.append(step)
    if problems:
        raise DefinitionError("; ".join(problems))
    return Workflow(name, str(body.get("description", "")), tuple(steps))


def _check_step(where: str, step: Step, earlier: List[Step]) -> List[str]:
    p: List[str] = []
    it = catalog.lookup(step.code)
    where = f"{where} ({step.name or '?'} {step.code})"
    if not _NAME.match(step.name):
        p.append(f"{where}: 'name' must be lower-case letters, digits and _")
    if step.name in {e.name for e in earlier}:
        p.append(f"{where}: step name used twice")
    if not it.known:
        p.append(f"{where}: {step.code} is not in the interface catalogue")
    if step.code in catalog.WORKER_MANAGED:
        p.append(f"{where}: {step.code} is sent by the worker itself, not by a workflow")
    if step.undo is not None:
        if it.cancel_code is None:
            p.append(f"{where}: undo {step.undo.code} given, but {step.code} has no cancel code")
        elif step.undo.code != it.cancel_code:
            p.append(f"{where}: undo {step.undo.code} is not the cancel code of {step.code} "
                     f"(the catalogue says {it.cancel_code})")
    elif it.state_changing and not step.no_undo:
        p.append(f"{where}: a state-changing step needs an 'undo' or a 'no_undo' reason"
                 + (f" (its cancel code is {it.cancel_code})" if it.cancel_code else ""))
    if step.undo_uncertain is not None and (step.undo_uncertain != "2601"
                                            or not catalog.reversible(step.code)):
        p.append(f"{where}: undo_uncertain must be 2601 and only on a code 2601 can reverse")
    if step.check is not None:
        if it.kind != catalog.TRIAL:
            p.append(f"{where}: 'check' belongs on a trial step (2206, 2303)")
        if not isinstance(step.check, dict) or not step.check.get("field") \
                or "expected" not in step.check:
            p.append(f"{where}: 'check' needs 'field' and 'expected'")
        elif not _produced(step, str(step.check["field"])):
            p.append(f"{where}: check field {step.check['field']} is not in 'produces'")
    if not 1 <= step.timeout <= 3600 or not 0 <= step.retries <= 20:
        p.append(f"{where}: timeout must be 1..3600 and retries 0..20")
    names = {e.name: e for e in earlier}
    for ref in refs(step.input):
        p += _check_ref(where, ref, names, None)
    if step.undo is not None:
        for ref in refs(step.undo.input):
            p += _check_ref(where + " undo", ref, names, step)
    return p


def _check_ref(where: str, ref: str, earlier: Mapping[str, Step],
               own: Optional[Step]) -> List[str]:
    parts = ref.split(".")
    if parts[0] == "input":
        return []
    if parts[0] == "self" and own is not None and len(parts) > 1 and parts[1] in ("input",
                                                                               "output"):
        if parts[1] == "output" and not _produced(own, ".".join(parts[2:])):
            return [f"{where}: ${{{ref}}}: {own.name} does not produce {'.'.join(parts[2:])}"]
        return []
    if parts[0] == "steps" and len(parts) > 2:
        src = earlier.get(parts[1])
        if src is None:
            return [f"{where}: ${{{ref}}} names no earlier step"]
        if parts[2] == "output" and not _produced(src, ".".join(parts[3:])):
            return [f"{where}: ${{{ref}}}: {src.name} does not produce {'.'.join(parts[3:])}"]
        if parts[2] in ("input", "output"):
            return []
    return [f"{where}: ${{{ref}}}: a reference starts with input., steps.<name>.output., "
            "steps.<name>.input. or (in an undo) self."]


def _produced(step: Step, path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in step.produces)


# -- templates ----------------------------------------------------------------------------
def refs(template: Any) -> List[str]:
    """Every ``${…}`` reference in a template (for the checks above)."""
    if isinstance(template, str):
        m = _REF.match(template)
        return [m.group(1)] if m else []
    if isinstance(template, dict):
        return [r for v in template.values() for r in refs(v)]
    if isinstance(template, list):
        return [r for v in template for r in refs(v)]
    return []


def resolve(template: Any, scope: Mapping[str, Any]) -> Any:
    """The template with every reference replaced; InputError names a missing one."""
    if isinstance(template, str):
        m = _REF.match(template)
        if not m:
            return template
        value = lookup(scope, m.group(1))
        if value is MISSING:
            if m.group(2) is None:
                raise InputError(f"input has no {m.group(1)}")
            return _default(m.group(2))
        return value
    if isinstance(template, list):
        return [resolve(v, scope) for v in template]
    if isinstance(template, dict):
        out: Dict[str, Any] = {}
        if "$from" in template:
            base = resolve(template["$from"], scope)
            if not isinstance(base, dict):
                raise InputError(f"{template['$from']} must be a JSON object")
            out.update(base)
        for k, v in template.items():
            if k != "$from":
                out[k] = resolve(v, scope)
        return out
    return template


def _default(text: str) -> Any:
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def lookup(scope: Any, path: str) -> Any:
    """A dotted path in nested dicts / lists (a number indexes a list); MISSING if absent."""
    cur = scope
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur
