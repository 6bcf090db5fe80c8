"""The layer table as aligned text, in the manner of torchinfo's summary."""

from __future__ import annotations

from typing import Any

from .catalogue.base import fmt_shape


def _weights(shapes: dict[str, list[int]]) -> str:
    main = [fmt_shape(shapes[k]) for k in ("weight", "bias") if k in shapes]
    rest = len(shapes) - len(main)
    return " + ".join(main) + (f" (+{rest} stats)" if rest else "") if shapes else "-"


def _rf(rf: dict[str, list[int]]) -> str:
    if not rf["size"]:
        return "-"
    return f"{fmt_shape(rf['size'])} /{fmt_shape(rf['stride'])}"


def _mega(n: int) -> str:
    return f"{n / 1e6:,.2f} M" if n >= 10_000 else f"{n:,}"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):,.2f} MiB"


def render_table(table: dict[str, Any], explain: bool = False) -> str:
    """One row per layer (type, output shape, weight shapes, params, MACs, receptive field)."""
    header = ("Layer (type)", "Output", "Weights", "Params", "MACs", "RF (size /stride)")
    rows = [
        (
            f"{r['name']} ({r['type']})",
            fmt_shape(r["output_shape"]),
            _weights(r["weight_shapes"]),
            f"{r['params']:,}",
            f"{r['macs']:,}",
            _rf(r["receptive_field"]),
        )
        for r in table["layers"]
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    right = {3, 4}  # numbers align right

    def line(cells: tuple[str, ...]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "=" * len(line(header))
    lines = [f"Input: {fmt_shape(table['input_shape'])}", rule, line(header), "-" * len(rule)]
    for r, cells in zip(table["layers"], rows, strict=True):
        lines.append(line(cells))
        if explain:
            lines.append(f"    {r['explain']}")
    t = table["totals"]
    lines += [
        rule,
        f"Total params: {t['params']:,}",
        f"Multiply-adds per image: {_mega(t['macs'])}",
        f"Weights: {_mib(t['weight_bytes'])}   "
        f"Activations per image: {_mib(t['activation_bytes'])}",
        rule,
    ]
    return "\n".join(lines)
