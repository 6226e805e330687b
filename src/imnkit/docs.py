"""The recipe reference, generated from the stage declarations (README section and `imnkit stages --markdown`)."""

from __future__ import annotations

from .stage import available_stages


def stage_reference_markdown() -> str:
    lines = []
    for name, cls in available_stages().items():
        st = cls()
        defaults = {p.name: p.default for p in st.params}
        lines.append(f"### `{name}`\n")
        lines.append(f"{st.summary}\n")
        lines.append(f"- requires: {', '.join(f'`{k}`' for k in st.requires_for(defaults)) or '—'}")
        if st.optional:
            lines.append(f"- reads if present: {', '.join(f'`{k}`' for k in st.optional)}")
        lines.append(f"- provides: {', '.join(f'`{k}`' for k in st.provides_for(defaults)) or '—'}\n")
        if st.params:
            lines.append("| parameter | type | default | meaning |")
            lines.append("|---|---|---|---|")
            for p in st.params:
                extra = f" One of: {', '.join(f'`{c}`' for c in p.choices)}." if p.choices else ""
                if p.min is not None or p.max is not None:
                    extra += f" Range: {p.min if p.min is not None else '−∞'} … {p.max if p.max is not None else '∞'}."
                lines.append(f"| `{p.name}` | {p.type.__name__} | `{p.default!r}` | {p.help}.{extra} |")
            lines.append("")
    return "\n".join(lines) + "\n"
