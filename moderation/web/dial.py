"""The policy dial's presentation: the form in percent (German decimals), the automation curve as SVG coordinates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moderation.ml.calibration import CURVE_LEAKS, CurvePoint
from moderation.services.policy import LIMITS, RoutingPolicy

# Leak budgets the curve is drawn through: 0.25 % steps up to 10 %.
CURVE_GRID = tuple(round(0.0025 * i, 4) for i in range(1, 41))

# field: (label, help text)
FIELDS: dict[str, tuple[str, str]] = {
    "max_leak": ("Höchste Fehlerquote der automatischen Freigabe",
                 "Höchstens dieser Anteil der automatisch veröffentlichten Kommentare wäre von der Moderation "
                 "entfernt worden (mit 95 % Sicherheit)."),
    "min_reject_precision": ("Mindest-Trefferquote der automatischen Ablehnung",
                             "Mindestens dieser Anteil der automatisch abgelehnten Kommentare wäre von der "
                             "Moderation entfernt worden (mit 95 % Sicherheit)."),
    "expected_removal_rate": ("Erwartete Löschquote",
                              "Anteil aller Kommentare, den Ihre Moderation entfernt."),
    "audit_rate": ("Stichprobe",
                   "Dieser zufällige Anteil der automatischen Entscheidungen geht trotzdem in die Warteschlange "
                   "(„Stichprobe“): Ihre Entscheidungen darüber messen die tatsächliche Fehlerquote."),
}


def percent_value(fraction: float) -> str:
    """Format a fraction as the form shows it, in percent with a German decimal comma ("2", "2,5")."""
    return f"{fraction * 100:.4f}".rstrip("0").rstrip(".").replace(".", ",")


def threshold(value: float, kind: str) -> str:
    """Format a routing threshold ("0,105"), or say that the model decides nothing by itself on that side."""
    if kind == "approve" and value <= 0.0:
        return "–"
    if kind == "reject" and value >= 1.0:
        return "–"
    return f"{value:.3f}".replace(".", ",")


SHORT = {"max_leak": "Fehlerquote", "min_reject_precision": "Trefferquote", "expected_removal_rate": "Löschquote",
         "audit_rate": "Stichprobe"}


def describe(values: Mapping[str, float] | None) -> str:
    """Summarise a stored policy in one German line ("Fehlerquote 2 %, Trefferquote 95 %, …")."""
    if not values:
        return "–"
    return ", ".join(f"{label} {percent_value(values[name])} %" for name, label in SHORT.items() if name in values)


def form_values(policy: RoutingPolicy) -> dict[str, str]:
    """Return the form's initial values for `policy`."""
    return {name: percent_value(getattr(policy, name)) for name in FIELDS}


def _range_message(name: str) -> str:
    _, low, high, low_ok, high_ok = LIMITS[name]
    lower = f"{'mindestens' if low_ok else 'größer als'} {percent_value(low)} %"
    upper = f"{'höchstens' if high_ok else 'kleiner als'} {percent_value(high)} %"
    return f"Bitte einen Wert {lower} und {upper} angeben."


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """Read the four percentages ("2", "2,5", "2.5 %") as fractions; return (values, German errors by field)."""
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in FIELDS:
        raw = (form.get(name) or "").strip().removesuffix("%").strip().replace(",", ".")
        try:
            number = float(raw)
        except ValueError:
            errors[name] = "Bitte eine Zahl in Prozent angeben, z. B. 2 oder 2,5."
            continue
        if number != number or number in (float("inf"), float("-inf")):
            errors[name] = "Bitte eine Zahl in Prozent angeben, z. B. 2 oder 2,5."
            continue
        _, low, high, low_ok, high_ok = LIMITS[name]
        fraction = round(number / 100, 6)
        if fraction < low or fraction > high or (fraction == low and not low_ok) or (fraction == high and not high_ok):
            errors[name] = _range_message(name)
            continue
        values[name] = fraction
    return values, errors


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    label: str
    title: str
    current: bool


@dataclass(frozen=True)
class CurveChart:
    width: int
    height: int
    left: int
    top: int
    plot_w: float
    plot_h: float
    path: str
    markers: list[Marker]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    budget_x: float | None
    empty: bool


def curve_chart(points: Sequence[CurvePoint], *, budget: float, marked: Sequence[float] = CURVE_LEAKS,
                width: int = 720, height: int = 280) -> CurveChart:
    """Lay out the automated share against the leak budget as a step line with the marked budgets as dots."""
    left, right, top, bottom = 52, 16, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max((p.max_leak for p in points), default=0.1) or 0.1

    def x(leak: float) -> float:
        return round(left + plot_w * min(leak, x_max) / x_max, 2)

    def y(share: float) -> float:
        return round(top + plot_h * (1 - share), 2)

    # The share changes only at a budget of the grid: hold each value until the next budget (a step line).
    path, previous = [], None
    for point in points:
        if previous is None:
            path.append(f"M{x(0)},{y(point.automated_share)}")
        else:
            path.append(f"H{x(point.max_leak)}V{y(point.automated_share)}")
        previous = point
    if previous is not None:
        path.append(f"H{x(x_max)}")
    by_leak = {round(p.max_leak, 4): p for p in points}
    markers = []
    for leak in marked:
        point = by_leak.get(round(leak, 4))
        if point is None:
            continue
        share = _percent(point.automated_share)
        markers.append(Marker(x(leak), y(point.automated_share), share,
                              f"Fehlerquote {_percent(leak)}: {share} automatisch entschieden",
                              abs(leak - budget) < 1e-9))
    x_ticks = [(x(t), _percent(t)) for t in (0.0, 0.02, 0.04, 0.06, 0.08, 0.10) if t <= x_max + 1e-9]
    y_ticks = [(y(t), _percent(t)) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return CurveChart(width, height, left, top, plot_w, plot_h, "".join(path), markers, x_ticks, y_ticks,
                      x(budget) if 0 < budget <= x_max else None, empty=not points)


def _percent(value: float) -> str:
    return f"{value * 100:.1f}".replace(".", ",").removesuffix(",0") + " %"
