"""The dashboard page: data from the ledger and the health probes, rendered
on the server as HTML with inline SVG charts. No JavaScript, no CDN: the page
is complete as it leaves the server and refreshes itself every 30 s.

Every string that can come from a client (model names) is escaped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac"]  # fmt: skip
HOURS = 24


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def collect(
    store,
    health: list,
    now: float | None = None,
    replicas: list | None = None,
    problems: dict | None = None,
) -> dict:
    """Everything the page shows, as plain data (store may be None).
    ``problems``: per backend name, what is wrong with its model."""
    now = now or time.time()
    first_hour = int(now // 3600) * 3600 - (HOURS - 1) * 3600
    data: dict = {
        "now": now,
        "hours": [first_hour + i * 3600 for i in range(HOURS)],
        "health": health,
        "replicas": replicas,
        "problems": problems or {},
        "telemetry": store is not None,
    }
    if store is None:
        return data
    tokens: dict[str, dict[int, int]] = {}
    requests = {h: 0 for h in data["hours"]}
    errors = {h: 0 for h in data["hours"]}
    for hour, model, input_tokens, output_tokens, count, failed in store.hourly(first_hour):
        hour = int(hour)
        if hour not in requests:
            continue
        tokens.setdefault(model or "-", {})[hour] = int(input_tokens) + int(output_tokens)
        requests[hour] += int(count)
        errors[hour] += int(failed)
    totals = store.stats(first_hour, None, None)["totals"]
    data["cache"] = {
        "hit_ratio": totals["cache_hit_ratio"],
        "prefix_reuse": totals["avg_prefix_reuse"],
        "sessions": store.cache_by_session(first_hour),
    }
    data["keys"] = [
        (row["key"], row["requests"], row["input_tokens"], row["output_tokens"], row["errors"])
        for row in store.stats(first_hour, None, "key")["groups"]
    ]
    data["text_tool_calls"] = {
        row["key"]: row["text_tool_calls"]
        for row in store.stats(first_hour, None, "backend")["groups"]
        if row["text_tool_calls"]
    }
    lat = store.latencies(first_hour)
    latencies = [row[0] for row in lat if row[0] is not None]
    ttfts = [row[1] for row in lat if row[1] is not None]
    data.update(
        tokens=tokens,
        requests=requests,
        errors=errors,
        percentiles={
            name: {f"p{int(p * 100)}": percentile(values, p) for p in (0.5, 0.95, 0.99)}
            for name, values in (("latency_ms", latencies), ("ttft_ms", ttfts))
        },
        totals={
            "requests": sum(requests.values()),
            "errors": sum(errors.values()),
            "tokens": sum(sum(v.values()) for v in tokens.values()),
        },
    )
    return data


def _hour_label(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:00")


def _number(n: float | None) -> str:
    if n is None:
        return "–"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000:
        return f"{n / 1_000:.1f}k"
    return f"{n:.0f}"


def bar_chart(hours: list[int], series: list[tuple[str, str, dict[int, int]]], title: str) -> str:
    """Stacked bars per hour; series = [(label, colour, {hour: value})]."""
    width, height, left, bottom, top = 760, 220, 56, 28, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    totals = [sum(values.get(h, 0) for _, _, values in series) for h in hours]
    peak = max(totals + [1])
    slot = plot_w / len(hours)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # grid and y labels
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{_number(peak * i / 4)}</text>"
        )
    for i, hour in enumerate(hours):
        x = left + i * slot + 2
        y = top + plot_h
        for label, colour, values in series:
            value = values.get(hour, 0)
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot - 4:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)} {_hour_label(hour)}: {value}</title></rect>'
            )
        if i % 3 == 0:
            parts.append(
                f'<text x="{x + (slot - 4) / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                f'font-size="11">{_hour_label(hour)}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><svg width="10" height="10"><rect width="10" height="10" fill="{c}"/></svg> '
        f"{escape(label)}</span>"
        for label, c, _ in series
    )
    return f'<figure><figcaption>{escape(title)}</figcaption>{"".join(parts)}<div class="legend">{legend}</div></figure>'


def render(data: dict) -> str:
    sections = []
    if data["telemetry"]:
        models = sorted(data["tokens"])
        token_series = [
            (m, PALETTE[i % len(PALETTE)], data["tokens"][m]) for i, m in enumerate(models)
        ]
        ok = {h: data["requests"][h] - data["errors"][h] for h in data["hours"]}
        sections.append(
            f'<p class="totals">Last 24 hours: <b>{data["totals"]["requests"]}</b> requests, '
            f"<b>{data['totals']['errors']}</b> errors, <b>{_number(data['totals']['tokens'])}</b> tokens.</p>"
        )
        sections.append(
            bar_chart(data["hours"], token_series, "Tokens per hour by model (input + output)")
        )
        sections.append(
            bar_chart(
                data["hours"],
                [("ok", "#59a14f", ok), ("errors", "#e15759", data["errors"])],
                "Requests and errors per hour",
            )
        )
        rows = "".join(
            f"<tr><th>{label}</th>"
            + "".join(
                f"<td>{_number(data['percentiles'][key][p])} ms</td>" for p in ("p50", "p95", "p99")
            )
            + "</tr>"
            for key, label in (("latency_ms", "Latency"), ("ttft_ms", "Time to first token"))
        )
        sections.append(
            f"<h2>Latency (last 24 hours)</h2><table><tr><th></th><th>p50</th><th>p95</th>"
            f"<th>p99</th></tr>{rows}</table>"
        )
        sections.append(_cache_section(data["cache"]))
        sections.append(_keys_section(data["keys"]))
        if data["text_tool_calls"]:
            sections.append(_text_tool_calls_notice(data["text_tool_calls"]))
    else:
        sections.append(
            '<p class="notice">Telemetry is disabled: set TELEMETRY_ENABLED=true to record usage. '
            "Backend health is shown below.</p>"
        )
    replicas = data.get("replicas") or [[] for _ in data["health"]]
    problems = data.get("problems") or {}
    health_rows = "".join(
        _health_row(h.name, h.url, h.reachable and h.name not in problems,
                    ("up" if h.reachable else "down") + (", wrong model" if h.name in problems else ""),
                    h.latency_ms, problems.get(h.name) or h.detail)
        + "".join(
            _health_row("↳ replica", r["url"], r["state"] == "up" and r["reachable"],
                        f"{r['state']}, {r['in_flight']} in flight", r["latency_ms"],
                        r["last_error"])
            for r in (rs if len(rs) > 1 else [])
        )
        for h, rs in zip(data["health"], replicas, strict=True)
    )  # fmt: skip
    sections.append(
        f"<h2>Backends</h2><table><tr><th>backend</th><th>URL</th><th>state</th><th>latency</th>"
        f"<th>detail</th></tr>{health_rows}</table>"
    )
    updated = datetime.fromtimestamp(data["now"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return PAGE.format(body="\n".join(sections), updated=updated)


def _keys_section(keys: list) -> str:
    """Use per client key, by name (never the key)."""
    rows = "".join(
        f"<tr><td>{escape(str(name or '-'))}</td><td>{count}</td><td>{_number(inp)}</td>"
        f"<td>{_number(out)}</td><td>{errors}</td></tr>"
        for name, count, inp, out, errors in keys
    )
    return (
        "<h2>By key (last 24 hours)</h2><table><tr><th>key</th><th>requests</th>"
        f"<th>input tokens</th><th>output tokens</th><th>errors</th></tr>{rows}</table>"
    )


def _health_row(name, url, ok: bool, state: str, latency_ms, detail) -> str:
    colour = "#59a14f" if ok else "#e15759"
    latency = _number(latency_ms) + " ms" if latency_ms is not None else "–"
    return (
        f'<tr><td>{escape(name)}</td><td>{escape(url)}</td><td><svg width="12" height="12">'
        f'<circle cx="6" cy="6" r="5" fill="{colour}"/></svg> {escape(state)}</td>'
        f"<td>{latency}</td><td>{escape(detail or '')}</td></tr>"
    )


def _text_tool_calls_notice(counts: dict) -> str:
    """Backends whose server left tool calls in the text: misconfigured."""
    items = ", ".join(
        f"<b>{escape(str(backend))}</b>: {n}" for backend, n in sorted(counts.items())
    )
    return (
        '<h2>Tool calls in the text (last 24 hours)</h2><p class="notice">Tool calls the '
        f"gateway found in the backend's text and turned into real calls: {items}. That "
        "backend's server does not parse tool calls (vLLM without <code>--tool-call-parser</code>, "
        "llama.cpp without <code>--jinja</code>, an Ollama template without tools); see "
        'docs/configuration.md, "Tool calls in the text".</p>'
    )


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _cache_section(cache: dict) -> str:
    """How well sessions keep the backend's prefix cache: the backend's own
    hit count (vLLM, llama.cpp server) and the gateway's prefix measure."""
    rows = "".join(
        f"<tr><td><code>{escape(str(sid))}</code></td><td>{count}</td><td>{_share(reuse)}</td>"
        f"<td>{_share(cached / (inp + cached) if inp + cached else None)}</td></tr>"
        for sid, count, reuse, inp, cached in cache["sessions"]
    )
    table = (
        "<table><tr><th>session (least reuse first)</th><th>requests</th><th>prefix reuse</th>"
        f"<th>cache hits</th></tr>{rows}</table>"
        if rows
        else "<p>No session has sent a second request yet.</p>"
    )
    return (
        "<h2>Prompt cache (last 24 hours)</h2>"
        f'<p class="totals">Prompt tokens the backends served from their cache: '
        f"<b>{_share(cache['hit_ratio'])}</b>; share of each session request repeating the "
        f"previous one (the gateway's measure): <b>{_share(cache['prefix_reuse'])}</b>.</p>" + table
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Toktoken dashboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 820px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 28px 0 8px; }}
figure {{ margin: 20px 0; }} figcaption {{ font-weight: 600; margin-bottom: 6px; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.legend {{ font-size: 12px; }} .key {{ margin-right: 12px; white-space: nowrap; }}
.notice {{ background: #fff4d6; padding: 8px 12px; }} .muted {{ color: #777; font-size: 12px; }}
form.logout {{ float: right; }}
</style></head><body>
<form class="logout" method="post" action="/dashboard/logout"><button>Sign out</button></form>
<h1>Toktoken</h1><p class="muted">Updated {updated}; refreshes every 30 s.</p>
{body}
</body></html>"""


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Toktoken dashboard: sign in</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 48px; }} input {{ width: 320px; }}
.error {{ color: #b00; }}</style></head><body>
<h1>Toktoken dashboard</h1>
{message}
<form method="post" action="/dashboard/login">
<label>API key <input type="password" name="key" autocomplete="current-password" autofocus></label>
<button type="submit">Sign in</button>
</form>
<p>The key is sent in the form body, never in the address; the browser keeps a signed session
cookie (12 hours), not the key.</p>
</body></html>"""
