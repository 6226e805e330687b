"""`imnkit metrics`, `imnkit inspect`, `imnkit stages` and `imnkit doctor`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app
from ._common import err_console, escape, handle_errors, out_console, print_json


@app.command("metrics")
def metrics_cmd(
    a: Annotated[Path, typer.Argument(help="First image (e.g. the original photo).")],
    b: Annotated[Path, typer.Argument(help="Second image of the same size (e.g. the recovered one).")],
    region: Annotated[Optional[str], typer.Option("--region", help="Measure only the box y0,x0,y1,x1 (exclusive ends).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (PSNR of identical images: \"inf\").")] = False,
    identity: Annotated[bool, typer.Option("--identity", help="Add the identity distance per face (dlib ResNet; < 0.6 = same person).")] = False,
) -> None:
    """PSNR (RGB and Y), SSIM, RMSE and MAE between two images on the 0-255 scale."""
    from ..imageio import load_image
    from ..metrics import compare, json_safe, parse_region

    with handle_errors():
        box = parse_region(region) if region else None
        img_a, img_b = load_image(a), load_image(b)
        result = compare(img_a, img_b, box)
        values = {k: json_safe(v) for k, v in result.to_dict().items()}
        extra = {}
        if identity:
            from ..face.report import identity_report

            extra["identity"] = identity_report(img_a, img_b)
    if json_out:
        print_json({"a": str(a), "b": str(b), "region": list(box) if box else None, **values, **extra})
        return
    from rich.table import Table

    table = Table(title=f"{escape(a.name)} vs {escape(b.name)}" + (f" over {region}" if region else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    units = {"psnr_rgb": "dB", "psnr_y": "dB", "ssim": "", "rmse": "(0-255)", "mae": "(0-255)"}
    for key, value in values.items():
        shown = value if isinstance(value, str) else f"{value:.4f}"
        table.add_row(f"{key} {units[key]}".strip(), shown)
    for face in extra.get("identity", []):
        table.add_row(f"identity face {face['face']}", f"{face['distance']:.3f}")
    out_console.print(table)


@app.command("inspect")
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="A bundle or aux file (.safetensors), or a masked PNG or .mkv with its aux inside.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a bundle's keys, shapes, dtypes, metadata and history; for an aux, its faces (index, box, treatment).

    Never key values or pixels: key material and sealed keys are shown by size only.
    """
    from ..protect.inspect import describe_file

    with handle_errors():
        info = describe_file(file)
    if json_out:
        print_json(info)
        return
    from rich.table import Table

    out_console.print(f"[bold]{escape(str(file))}[/]  format {info['format']}  imnkit {info['imnkit_version']}")
    table = Table(title="tensors")
    for col in ("key", "dtype", "shape"):
        table.add_column(col)
    for key, entry in info["tensors"].items():
        table.add_row(escape(key), entry["dtype"], "x".join(str(s) for s in entry["shape"]) or "scalar")
    out_console.print(table)
    if info.get("meta"):
        out_console.print("[bold]metadata[/]")
        for key, value in info["meta"].items():
            out_console.print(f"  {escape(key)}: {escape(str(value))}")
    if info.get("faces"):
        faces = Table(title="faces (take one off with imnkit extract --face N)")
        for col in ("face", "box y0,x0,y1,x1", "treatment"):
            faces.add_column(col)
        for f in info["faces"]:
            faces.add_row(str(f["face"]), ",".join(str(v) for v in f["box"]), escape(str(f["treatment"] or "-")))
        out_console.print(faces)
    if info.get("tracks"):  # a clip: its tracked people
        tracks = Table(title="tracked faces (take one off with imnkit extract --face N)")
        for col in ("face", "Mask identity", "frames", "first", "last"):
            tracks.add_column(col)
        for t in info["tracks"]:
            tracks.add_row(*(escape(str(t.get(k))) for k in ("track", "identity", "frames", "first", "last")))
        out_console.print(tracks)
    if info.get("history"):
        hist = Table(title="history")
        for col in ("#", "stage", "device", "seconds", "params", "weights"):
            hist.add_column(col)
        for i, h in enumerate(info["history"], 1):
            weights = ", ".join(f"{k}@{(v or 'absent')[:12]}" for k, v in (h.get("weights") or {}).items())
            params = ", ".join(f"{k}={v}" for k, v in (h.get("params") or {}).items())
            hist.add_row(str(i), escape(str(h.get("stage"))), escape(str(h.get("device"))), str(h.get("seconds")),
                         escape(params), escape(weights))
        out_console.print(hist)


@app.command("stages")
def stages_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the recipe reference as Markdown.")] = False,
) -> None:
    """List every stage with what it requires, provides and its parameters."""
    from ..stage import available_stages

    if markdown:
        from ..docs import stage_reference_markdown

        print(stage_reference_markdown(), end="")
        return
    for name, cls in available_stages().items():
        st = cls()
        defaults = {p.name: p.default for p in st.params}
        out_console.print(f"[bold]{escape(name)}[/] - {escape(st.summary)}")
        out_console.print(f"  requires: {escape(', '.join(st.requires_for(defaults)) or '-')}")
        out_console.print(f"  provides: {escape(', '.join(st.provides_for(defaults)) or '-')}")
        for p in st.params:
            choices = f" ({'|'.join(map(str, p.choices))})" if p.choices else ""
            out_console.print(f"  {escape(p.name)}: {p.type.__name__} = {escape(repr(p.default))}{escape(choices)}  {escape(p.help)}")


@app.command("doctor")
def doctor_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Versions, devices, which weights are shipped, cached or missing, and the offline state."""
    from ..doctor import collect

    report = collect()
    if json_out:
        print_json(report)
        return
    out_console.print(f"[bold]imnkit[/] {report['imnkit']}  python {report['python']}  ({escape(report['platform'])})")
    out_console.print("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))
    out_console.print("devices: " + ", ".join(f"{d['name']} ({d['detail']})" for d in report["devices"]))
    out_console.print(f"Hub offline: {report['offline']}  HF cache: {escape(report['hf_cache'])}")
    from rich.table import Table

    table = Table(title="weights")
    for col in ("name", "source", "state", "licence"):
        table.add_column(col)
    for w in report["weights"]:
        table.add_row(escape(w["name"]), w["source"], w["state"], escape(w["license"]))
    out_console.print(table)
    for name, where in report["dlib_models"].items():
        out_console.print(f"dlib model {escape(name)}: {escape(where)}")
    for line in report["problems"]:
        err_console.print(f"[yellow]warning:[/] {escape(line)}")
