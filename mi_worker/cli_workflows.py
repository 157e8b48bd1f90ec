"""`mi-worker workflows` (the definitions) and the workflow half of `mi-worker call` and
`mi-worker requests show` (issue 14)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

import click

from mi_worker import monitor
from mi_worker.cli_context import QUIET, Context, emit, pass_ctx
from mi_worker.db import Database
from mi_worker.gateway import catalog
from mi_worker.workflows.definitions import DefinitionError, Workflow, load


def registry(c: Context) -> Mapping[str, Workflow]:
    """The definitions this configuration runs (shipped + workflows.file), or a clear error."""
    try:
        return load(c.settings.workflows.file)
    except DefinitionError as exc:
        raise click.ClickException(f"config key workflows.file: {exc}") from None


@click.command("workflows")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def workflows(c: Context, as_json: bool) -> None:
    """List the settlement workflows: each step, its undo, and what undoes it when in doubt."""
    c.setup_logging(QUIET)
    data = [{"name": wf.name, "description": wf.description, "steps": [
        {"n": n, "name": s.name, "code": s.code, "interface": catalog.name(s.code),
         "optional": s.optional, "undo": s.undo.code if s.undo else None,
         "when_uncertain": s.undo_uncertain or ("" if s.kind == catalog.TRIAL else
                                                "cancel code" if s.undo else "person"),
         "no_undo": s.no_undo} for n, s in enumerate(wf.steps, 1)]}
        for wf in registry(c).values()]

    def render(d: List[Dict[str, Any]]) -> str:
        out = []
        for wf in d:
            out.append(f"{wf['name']}: {wf['description']}")
            for s in wf["steps"]:
                undo = s["undo"] or ("-" if not s["no_undo"] else f"none ({s['no_undo']})")
                out.append(f"  {s['n']}. {s['name']:<11} {s['code']} {s['interface']}"
                           f"{' (optional)' if s['optional'] else ''}  undo: {undo}"
                           + (f"  uncertain: {s['when_uncertain']}"
                              if s["when_uncertain"] == "2601" else ""))
        return "\n".join(out)
    emit(data, as_json, render, unmask=True)  # definitions hold no personal data


def workflow_tree(database: Database, workflow_id: int) -> Dict[str, Any]:
    """A workflow row, every step and undo row, and the 2601 rows of each (requests show)."""
    wf = database.run_one("wf_get", workflow_id=workflow_id)
    if not wf:
        raise click.ClickException(f"workflow {workflow_id} not found")
    steps = []
    for r in database.run("wf_steps", workflow_id=workflow_id):
        kids = database.run("find_children", parent_request_id=int(r["request_id"]))
        steps.append({**monitor.rows([r])[0], "reversals": monitor.rows(kids)})
    head = {k: wf[k] for k in ("workflow_id", "status", "current_step", "error_code",
                               "error_message", "reason", "created_at", "finished_at")}
    head["workflow"] = wf["name"]  # not "name": that key is masked as a person's name
    return {"workflow": head, "steps": steps}


def render_tree(d: Dict[str, Any]) -> str:
    w = d["workflow"]
    lines = [f"workflow {w['workflow_id']} {w['workflow']}: {w['status']} (step {w['current_step']})"
             f" {w['error_code'] if w['error_code'] is not None else ''} {w['error_message'] or ''}"]
    for s in d["steps"]:
        n = int(s["workflow_step"])
        what = f"step {n}" if n > 0 else f"  undo of step {-n}"
        lines.append(f"  {what:<16} request {s['request_id']:<8} {s['interface_code']:<6} "
                     f"{s['status']:<12} {s.get('error_message') or ''}")
        for k in s["reversals"]:
            lines.append(f"      2601 request {k['request_id']} {k['status']} "
                         f"{k.get('error_message') or ''}")
    return "\n".join(lines)
