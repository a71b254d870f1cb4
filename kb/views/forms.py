"""Turning the page editor's form into a page state, and a page's fields back into form values.

The controls follow the kind declaration (kb.kinds): one input per field, named `f.<field>`; lists are one entry per
line; tenures are rows `f.tenures.<i>.<key>`; risk is `f.risk.attrition` and `f.risk.criticality`.
"""
from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

from kb import kinds
from kb.pages import PageState

TENURE_ROWS_EXTRA = 1


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def fields_from_form(kind_name: str, form: MultiDict) -> dict[str, Any]:
    """Raw field values from the form, typed just enough for kinds.validate_fields to check them."""
    kind = kinds.KINDS.get(kind_name)
    out: dict[str, Any] = {}
    if kind is None:
        return out
    for f in kind.editable_fields:
        key = f"f.{f.name}"
        if f.type in ("links", "list"):
            out[f.name] = _lines(form.get(key, ""))
        elif f.type == "months":
            out[f.name] = [m for m in form.getlist(key) if m]
        elif f.type == "bool":
            value = form.get(key, "")
            out[f.name] = None if value == "" else value
        elif f.type == "tenures":
            rows = []
            i = 0
            while f"{key}.{i}.role" in form:
                row = {k: form.get(f"{key}.{i}.{k}", "").strip() for k in kinds.TENURE_KEYS}
                if any(row.values()):
                    rows.append({k: v for k, v in row.items() if v})
                i += 1
            out[f.name] = rows
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
        tags=[t for t in form.get("tags", "").replace("\n", ",").split(",") if t.strip()],
        visibility=form.get("visibility", "public"),
        readers=[r for r in form.get("readers", "").replace("\n", ",").split(",") if r.strip()],
        sources=_lines(form.get("sources", "")),
        body=form.get("body", ""),
    )


def form_values(kind_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Field values as the form shows them (lists as lines, tenures padded with an empty row)."""
    kind = kinds.KINDS.get(kind_name)
    out: dict[str, Any] = {}
    if kind is None:
        return out
    for f in kind.editable_fields:
        value = fields.get(f.name)
        if f.type in ("links", "list"):
            out[f.name] = "\n".join(str(v) for v in value or [])
        elif f.type == "months":
            out[f.name] = [str(m) for m in value or []]
        elif f.type == "tenures":
            out[f.name] = list(value or []) + [{}] * TENURE_ROWS_EXTRA
        elif f.type == "bool":
            out[f.name] = "" if value is None else ("true" if value in (True, "true") else "false")
        elif f.type == "risk":
            out[f.name] = value if isinstance(value, dict) else {}
        else:
            out[f.name] = "" if value is None else value
    return out
