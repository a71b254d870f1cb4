"""The page editor's form: turning a post into a page state, and a page's fields back into form values.

The controls follow the kind declaration (kb.kinds): one control per field, named `f.<field>`. Lists are one entry
per line; fields that repeat (`Field.repeats`) are rows: links one input per linked page (`f.<field>` repeated),
tenures `f.tenures.<i>.<key>`; risk is `f.risk.attrition` and `f.risk.criticality`. Repeated rows ("add another")
work without JavaScript: the `add_row=<field>` button posts the form back and it comes back with one more empty row.
The review before an initiative is ended is in kb.ending.
"""
from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from kb import kinds
from kb.pages import PageState


def _tenure_rows(form: MultiDict, key: str) -> list[dict[str, str]]:
    """Every tenure row posted, blank ones included, in order."""
    rows = []
    i = 0
    while any(f"{key}.{i}.{k}" in form for k in kinds.TENURE_KEYS):
        rows.append({k: form.get(f"{key}.{i}.{k}", "").strip() for k in kinds.TENURE_KEYS})
        i += 1
    return rows


def fields_from_form(kind_name: str, form: MultiDict) -> dict[str, Any]:
    """Raw field values from the form, typed just enough for kinds.validate_fields to check them."""
    kind = kinds.KINDS.get(kind_name)
    out: dict[str, Any] = {}
    if kind is None:
        return out
    for f in kind.editable_fields:
        key = f"f.{f.name}"
        if f.type == "links":
            # One input per page; a pasted list (one per line) is accepted too.
            out[f.name] = [line for value in form.getlist(key) for line in kinds.lines(value)]
        elif f.type == "list":
            out[f.name] = kinds.lines(form.get(key, ""))
        elif f.type == "months":
            out[f.name] = [m for m in form.getlist(key) if m]
        elif f.type == "bool":
            value = form.get(key, "")
            out[f.name] = None if value == "" else value
        elif f.type == "tenures":
            out[f.name] = [{k: v for k, v in row.items() if v} for row in _tenure_rows(form, key) if any(row.values())]
        elif f.type == "risk":
            a, c = form.get(f"{key}.attrition", ""), form.get(f"{key}.criticality", "")
            out[f.name] = {"attrition": a, "criticality": c} if (a or c) else None
        else:
            out[f.name] = form.get(key, "").strip()
    return out


def state_from_form(form: MultiDict, kind_name: str) -> PageState:
    return PageState(
        title=form.get("title", ""),
        kind=kind_name,
        fields=fields_from_form(kind_name, form),
        tags=[t.strip() for t in form.get("tags", "").replace("\n", ",").split(",") if t.strip()],
        visibility=form.get("visibility", "public"),
        readers=[r.strip() for r in form.get("readers", "").replace("\n", ",").split(",") if r.strip()],
        sources=kinds.lines(form.get("sources", "")),
        body=form.get("body", ""),
    )


def blank_rows(kind_name: str, form: MultiDict | None = None, add: str | None = None) -> dict[str, int]:
    """How many empty rows each repeated field shows: one, or as many as were posted, plus one for `add`."""
    kind = kinds.KINDS.get(kind_name)
    out: dict[str, int] = {}
    if kind is None:
        return out
    for f in kind.editable_fields:
        if not f.repeats:
            continue
        key = f"f.{f.name}"
        posted = 0
        if form is not None:
            if f.type == "tenures":
                posted = sum(1 for row in _tenure_rows(form, key) if not any(row.values()))
            else:
                posted = sum(1 for v in form.getlist(key) if not v.strip())
        out[f.name] = max(posted, 1) + (1 if add == f.name and posted >= 1 else 0)
    return out


def form_values(kind_name: str, fields: dict[str, Any], blanks: dict[str, int] | None = None) -> dict[str, Any]:
    """Field values as the form shows them: lists as lines, links and tenures as rows with empty rows to fill.

    Works on cleaned fields and on the raw values of a rejected post alike, so the user's input is kept.
    """
    kind = kinds.KINDS.get(kind_name)
    out: dict[str, Any] = {}
    if kind is None:
        return out
    blanks = blanks or {}
    for f in kind.editable_fields:
        value = fields.get(f.name)
        if f.type == "list":
            out[f.name] = "\n".join(str(v) for v in value or []) if isinstance(value, list) else str(value or "")
        elif f.type == "links":
            rows = [str(v) for v in value] if isinstance(value, list) else kinds.lines(str(value or ""))
            out[f.name] = rows + [""] * blanks.get(f.name, 1)
        elif f.type == "months":
            out[f.name] = [str(m) for m in value] if isinstance(value, list) else []
        elif f.type == "tenures":
            rows = [dict(t) for t in value if isinstance(t, dict)] if isinstance(value, list) else []
            out[f.name] = rows + [{} for _ in range(blanks.get(f.name, 1))]
        elif f.type == "bool":
            out[f.name] = "" if value in (None, "") else (
                "true" if value is True or str(value).lower() in ("true", "yes", "1") else "false")
        elif f.type == "risk":
            out[f.name] = {k: str(v) for k, v in value.items()} if isinstance(value, dict) else {}
        else:
            out[f.name] = "" if value is None else str(value)
    return out
