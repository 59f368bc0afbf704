"""The HTML page of the report: a Jinja template, its stylesheet and its table-sorting script.

The template is rendered with autoescaping on, so every value from the report (trace texts,
labels, reasons) is HTML-escaped; only the SVG plot and the script, built by our own code, are
inserted as markup. The page loads nothing: no fonts, images, stylesheets or scripts by URL.
"""

STYLESHEET = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --panel: #f5f7fa;
  --good: #1f7a4d; --bad: #b42318; --warn: #a15c07; --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; padding: 2rem clamp(1rem, 4vw, 3rem); color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; max-width: 1200px; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
p.lead, .muted { color: var(--muted); }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: 999px; font-weight: 600;
  font-size: .85rem; color: #fff; background: var(--muted); }
.badge.deploy, .badge.promoted { background: var(--good); }
.badge.refuse, .badge.refused { background: var(--bad); }
.badge.kept_champion { background: var(--warn); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr));
  gap: .8rem; margin: 1rem 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: .7rem .9rem; }
.card .value { font-size: 1.45rem; font-weight: 650; }
.card .meaning { font-size: .82rem; color: var(--muted); }
.assumption { border-left: 4px solid var(--accent); background: #eef3fb; padding: .6rem .9rem;
  border-radius: 0 6px 6px 0; }
.notice { border-left: 4px solid var(--bad); background: #fdf0ef; padding: .6rem .9rem;
  border-radius: 0 6px 6px 0; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
.table-scroll { overflow-x: auto; }
td.text { max-width: 36rem; overflow-wrap: anywhere; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: var(--muted); font-size: .8em; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: var(--ink); }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: var(--ink); }
tr.never-handled td:first-child { color: var(--bad); font-weight: 600; }
.bar { display: inline-block; height: .7rem; background: var(--accent); border-radius: 2px;
  vertical-align: middle; margin-right: .4rem; }
code, .label { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: .85em; }
.up { color: var(--good); } .down { color: var(--bad); }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .85rem; }
svg text { font-family: inherit; fill: var(--ink); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .curve { fill: none; stroke: var(--accent); stroke-width: 2; }
svg .point { fill: var(--accent); }
svg .point.refused { fill: #fff; stroke: var(--bad); stroke-width: 2; }
svg .target { stroke: var(--warn); stroke-dasharray: 4 3; stroke-width: 1.5; }
svg .holdout-point { fill: var(--warn); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; margin: .4rem 0 1rem; }
.pair > div { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: .6rem .8rem; overflow-wrap: anywhere; }
.pair .side { font-size: .8rem; font-weight: 600; color: var(--muted); }
.flag { color: var(--bad); font-weight: 600; }
details summary { cursor: pointer; color: var(--accent); }
"""

# Sorts a table with class "sortable" by the clicked header; cells carry their sort key in
# data-value, headers say data-type="number" or "text". Empty numbers sort last.
SORT_SCRIPT = """
(function () {
  function key(cell, numeric) {
    var raw = cell.getAttribute('data-value');
    if (raw === null) { raw = cell.textContent; }
    if (!numeric) { return raw.toLowerCase(); }
    return raw === '' ? null : parseFloat(raw);
  }
  function sortBy(table, header, column) {
    var numeric = header.getAttribute('data-type') === 'number';
    var ascending = header.getAttribute('aria-sort') !== 'ascending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      other.removeAttribute('aria-sort');
    });
    header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (row) {
      return row.cells.length > column;
    });
    rows.sort(function (first, second) {
      var a = key(first.cells[column], numeric);
      var b = key(second.cells[column], numeric);
      if (a === b) { return 0; }
      if (a === null) { return 1; }
      if (b === null) { return -1; }
      return (a < b ? -1 : 1) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.setAttribute('tabindex', '0');
      header.addEventListener('click', function () { sortBy(table, header, column); });
      header.addEventListener('keydown', function (event) {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          sortBy(table, header, column);
        }
      });
    });
  });
})();
"""

REPORT_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{{ content_security_policy }}">
<title>Surrogate report {{ report.partition }}</title>
<style>{{ stylesheet }}</style>
</head>
<body>
{% set head = report.headline %}
<header>
<h1>Surrogate report for {{ report.partition }}</h1>
<p class="lead">
Gate <span class="badge {{ head.decision }}">{{ head.decision }}</span>
&nbsp;Deployment <span class="badge {{ head.deployment_decision }}">
{{- head.deployment_decision | replace("_", " ") }}</span>
&nbsp;· candidate <span class="label">{{ head.candidate or "—" }}</span>
· embeddings <span class="label">{{ head.embedding_model }}</span>
</p>
</header>

{% if head.decision != "deploy" %}
<p class="notice"><strong>The gate refused:</strong>
{{ (head.reason or "no reason recorded") | trim(". ") }}. No threshold was certified for today's
candidate{% if head.champion_version %}; the champion (version {{ head.champion_version }}),
certified on an earlier day, keeps serving. The figures below are today's refused candidate's.
{% else %}, and there is no champion, so the surrogate handles no traffic and every trace goes
to the LLM.
{% endif %}
</p>
{% endif %}
{% if head.deployment_reason and head.decision == "deploy" %}
<p class="muted">Deployment: {{ head.deployment_reason }}</p>
{% endif %}

<section id="headline">
<h2>Headline</h2>
<div class="cards">
  <div class="card"><div class="value">{{ head.alpha | pct(trim=True) }}</div>
    <div class="meaning">α, target agreement with the teacher on handled traffic</div></div>
  <div class="card"><div class="value">{{ head.delta | pct(trim=True) }}</div>
    <div class="meaning">δ, allowed chance that the guarantee fails</div></div>
  <div class="card"><div class="value">{{ head.agreement_lower_bound | pct }}</div>
    <div class="meaning">certified agreement lower bound (calibration traces,
    confidence 1 − δ = {{ (1 - head.delta) | pct(trim=True) }})</div></div>
  <div class="card"><div class="value">{{ head.coverage_holdout | pct }}</div>
    <div class="meaning">coverage on held-out traces: share the surrogate handles</div></div>
  <div class="card"><div class="value">{{ head.agreement_holdout | pct }}</div>
    <div class="meaning">agreement on handled held-out traces
    ({{ head.n_handled_holdout }} of {{ head.n_holdout }} handled)</div></div>
  <div class="card"><div class="value">{{ head.coverage_calibration | pct }}</div>
    <div class="meaning">coverage on calibration traces
    ({{ head.n_calibration if head.n_calibration is not none else "—" }} traces)</div></div>
  <div class="card"><div class="value">{{ head.threshold | number }}</div>
    <div class="meaning">threshold: the surrogate handles a trace when its score reaches it
    </div></div>
  <div class="card"><div class="value">{{ head.n_traces }}</div>
    <div class="meaning">traces in this refit ({{ head.n_holdout }} held out, never trained on)
    </div></div>
  <div class="card"><div class="value">{{ head.champion_version or "—" }}</div>
    <div class="meaning">champion version serving traffic</div></div>
  <div class="card"><div class="value" id="cost-saved">{{ head.cost_saved_per_day | usd }}</div>
    <div class="meaning">LLM cost saved per day: {{ head.llm_calls_avoided_per_day | count }}
    of {{ head.daily_traffic | count }} daily calls at {{ head.price_per_llm_call | usd }} each,
    at the held-out coverage (TRACER_DAILY_TRAFFIC, TRACER_PRICE_PER_CALL)</div></div>
</div>
<p class="assumption">{{ report.assumption }}</p>
</section>

<section id="frontier">
<h2>Frontier: coverage the gate can certify at each α</h2>
<figure>
{{ frontier_svg }}
<figcaption>Coverage certified on calibration traces (share of traffic the surrogate may handle
while its agreement stays at least α with confidence 1 − δ), for each target agreement α.
Hollow red points: the gate refuses at that α. Dashed line: today's α; the diamond on it is
today's coverage on held-out traces.</figcaption>
</figure>
{% if report.frontier %}
<details><summary>Frontier as a table</summary>
<table>
<thead><tr><th class="num">α</th><th class="num">coverage certified (calibration)</th>
<th class="num">threshold</th><th class="num">agreement lower bound</th><th>refused</th></tr>
</thead>
<tbody>
{% for point in report.frontier %}
<tr><td class="num">{{ point.alpha | pct }}</td>
<td class="num">{{ point.coverage_certified | pct }}</td>
<td class="num">{{ point.threshold | number }}</td>
<td class="num">{{ point.agreement_lower_bound | pct }}</td>
<td>{{ "yes" if point.refused else "no" }}</td></tr>
{% endfor %}
</tbody>
</table>
</details>
{% endif %}
</section>

<section id="labels">
<h2>Per teacher label, on held-out traces</h2>
<p class="muted">Click a column header to sort. Labels in red were never handled: every held-out
trace with that teacher label went to the LLM.</p>
<div class="table-scroll">
<table id="per-label-table" class="sortable">
<thead><tr>
<th data-type="text">teacher label</th>
<th data-type="number" class="num">share of held-out traces</th>
<th data-type="number" class="num">held-out traces</th>
<th data-type="number" class="num">coverage (held-out)</th>
<th data-type="number" class="num">agreement on handled (held-out)</th>
<th data-type="number" class="num">coverage change since {{ previous_partition or "—" }}</th>
<th data-type="text">main defer reason</th>
<th data-type="text">never handled</th>
</tr></thead>
<tbody>
{% for row in label_rows %}
<tr{% if row.never_handled %} class="never-handled"{% endif %}>
<td class="label" data-value="{{ row.label }}">{{ row.label }}</td>
<td class="num" data-value="{{ row.share }}">{{ row.share | pct }}</td>
<td class="num" data-value="{{ row.n_holdout }}">{{ row.n_holdout }}</td>
<td class="num" data-value="{{ row.coverage }}">{{ row.coverage | pct }}</td>
<td class="num" data-value="{{ row.agreement if row.agreement is not none else '' }}">
{{- row.agreement | pct }}</td>
<td class="num" data-value="{{ row.coverage_change if row.coverage_change is not none else '' }}">
{%- if row.coverage_change is none %}—{% else %}<span class="
{{- 'up' if row.coverage_change > 0 else ('down' if row.coverage_change < 0 else '') }}">
{{- row.coverage_change | points }}</span>{% endif %}</td>
<td data-value="{{ row.main_defer_reason or '' }}">
{{- reason_names[row.main_defer_reason].name if row.main_defer_reason else "—" }}</td>
<td{% if row.never_handled %} class="flag"{% endif %}>
{{- "never handled" if row.never_handled else "no" }}</td>
</tr>
{% else %}
<tr><td colspan="8" class="muted">No held-out traces for this partition.</td></tr>
{% endfor %}
</tbody>
</table>
</div>
</section>

<section id="defer-reasons">
<h2>Why traces were deferred to the LLM (held-out)</h2>
{% if report.defer_reasons %}
<table>
<thead><tr><th>reason</th><th class="num">deferred traces</th>
<th>share of deferred traces</th><th>meaning</th></tr></thead>
<tbody>
{% for reason, count in defer_reasons %}
<tr><td>{{ reason_names[reason].name }}</td><td class="num">{{ count }}</td>
<td class="num"><span class="bar" style="width: {{ (120 * count / n_deferred) | round(1) }}px">
</span>{{ (count / n_deferred) | pct }}</td>
<td>{{ reason_names[reason].meaning }}</td></tr>
{% endfor %}
</tbody>
</table>
<details><summary>Defer reasons by teacher label</summary>
<table>
<thead><tr><th>teacher label</th><th>deferred traces by reason</th></tr></thead>
<tbody>
{% for label, counts in defer_reasons_by_label %}
<tr><td class="label">{{ label }}</td>
<td>{% for reason, count in counts %}{{ reason_names[reason].name }}: {{ count }}
{%- if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}
</tbody>
</table>
</details>
{% else %}
<p class="muted">No held-out trace was deferred.</p>
{% endif %}
</section>

<section id="confusions">
<h2>Most frequent disagreements (held-out)</h2>
{% if report.confusions %}
<p class="muted">Pairs of teacher label and surrogate label on held-out traces where they differ,
whether or not the surrogate handled the trace; "served" counts the ones it handled.</p>
<table>
<thead><tr><th>teacher label</th><th>surrogate label</th><th class="num">traces</th>
<th class="num">served</th><th>example input</th></tr></thead>
<tbody>
{% for confusion in report.confusions %}
<tr><td class="label">{{ confusion.teacher }}</td><td class="label">{{ confusion.surrogate }}</td>
<td class="num">{{ confusion.count }}</td><td class="num">{{ confusion.n_handled }}</td>
<td class="text">{{ confusion.example }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="muted">The surrogate agreed with the teacher on every held-out trace.</p>
{% endif %}
</section>

<section id="examples">
<h2>Examples of held-out traces</h2>
{% for kind, title, empty in [
  ("handled", "Handled by the surrogate (disagreements first, then the lowest scores)",
   "No held-out trace was handled."),
  ("deferred", "Deferred to the LLM (the highest-scored of each reason in turn)",
   "No held-out trace was deferred.")] %}
<h3>{{ title }}</h3>
{% if report.examples[kind] %}
<table>
<thead><tr><th>input</th><th>teacher label</th><th>surrogate label</th>
<th class="num">score</th><th>defer reason</th></tr></thead>
<tbody>
{% for example in report.examples[kind] %}
<tr><td class="text">{{ example.input }}</td><td class="label">{{ example.teacher }}</td>
<td class="label">{{ example.surrogate_label }}</td>
<td class="num">{{ example.score | number }}</td>
<td>{{ reason_names[example.defer_reason].name if example.defer_reason else "—" }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p class="muted">{{ empty }}</p>
{% endif %}
{% endfor %}
</section>

<section id="boundary-pairs">
<h2>Boundary pairs: where the surrogate stops handling a label (held-out)</h2>
{% if report.boundary_pairs %}
<p class="muted">For each teacher label, the handled held-out input and the deferred held-out
input of the same teacher label that lie closest to each other in embedding space (exact cosine
nearest neighbours over all such pairs).</p>
{% for pair in report.boundary_pairs %}
<h3><span class="label">{{ pair.label }}</span>
<span class="muted">· cosine similarity {{ pair.cosine_similarity | number }}</span></h3>
<div class="pair">
<div><div class="side">handled as {{ pair.handled.surrogate_label }}
(score {{ pair.handled.score | number }})</div>{{ pair.handled.input }}</div>
<div><div class="side">deferred: {{ reason_names[pair.deferred.defer_reason].name }}
(predicted {{ pair.deferred.surrogate_label }}, score {{ pair.deferred.score | number }})
</div>{{ pair.deferred.input }}</div>
</div>
{% endfor %}
{% else %}
<p class="muted">No teacher label has both handled and deferred held-out inputs.</p>
{% endif %}
</section>

<section id="over-time">
<h2>Per-label coverage over time (held-out traces of each day's refit)</h2>
{% set over = report.over_time %}
<p class="muted">A label has plateaued when, over the last {{ over.plateau_days }} days, the refit
drew on more traces but the label's coverage rose by less than
{{ over.plateau_min_gain | pct(trim=True) }} above its best of the earlier days (in
brackets: today's coverage minus that best); "full coverage": every held-out trace of the label
is handled already; "—": too few days to tell.</p>
<div class="table-scroll">
<table id="over-time-table" class="sortable">
<thead><tr><th data-type="text">teacher label</th>
{% for day in over.days %}<th data-type="number" class="num">{{ day }}</th>{% endfor %}
<th data-type="number">trend: today against the best of the {{ over.plateau_days - 1 }}
days before</th></tr>
<tr class="muted"><td>traces used</td>
{% for count in over.n_traces %}<td class="num">{{ count | count }}</td>{% endfor %}<td></td></tr>
</thead>
<tbody>
{% for row in over.labels %}
<tr><td class="label">{{ row.label }}</td>
{% for coverage in row.coverage %}
<td class="num" data-value="{{ coverage if coverage is not none else '' }}">
{{- coverage | pct }}</td>
{% endfor %}
{% set full = row.plateau and (row.coverage | reject("none") | list | last) >= 1.0 %}
<td data-value="{{ row.gain if row.gain is not none else '' }}"
{%- if row.plateau and not full %} class="flag"{% endif %}>
{%- if row.plateau is none %}—
{%- elif full %}full coverage
{%- elif row.plateau %}plateau
{%- elif row.gain >= over.plateau_min_gain %}growing
{%- else %}no more traces{% endif %}
{%- if row.gain is not none %} ({{ row.gain | points }}){% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
</div>
</section>

<section id="champion-change">
<h2>What changed against the previous champion</h2>
{% set change = report.champion_change %}
<p>Deployment <span class="badge {{ change.decision }}">
{{- (change.decision or "—") | replace("_", " ") }}</span>:
champion version {{ change.champion_before or "none" }} →
{{ change.champion_after or "none" }}{% if change.challenger_version %} (today's challenger:
version {{ change.challenger_version }}){% endif %}.
{% if change.reason %}Reason: {{ change.reason | trim(". ") }}.{% endif %}</p>
{% if change.comparison %}
{% set comparison = change.comparison %}
<table>
<thead><tr><th>on {{ comparison.basis or "fresh held-out traces" }}
({{ comparison.n_fresh }} traces)</th><th class="num">coverage</th>
<th class="num">agreement on handled</th><th class="num">agreement lower bound</th></tr></thead>
<tbody>
<tr><td>today's challenger</td><td class="num">{{ comparison.challenger.coverage | pct }}</td>
<td class="num">{{ comparison.challenger.agreement | pct }}</td>
<td class="num">{{ comparison.challenger.agreement_lower_bound | pct }}</td></tr>
{% if comparison.champion %}
<tr><td>previous champion</td><td class="num">{{ comparison.champion.coverage | pct }}</td>
<td class="num">{{ comparison.champion.agreement | pct }}</td>
<td class="num">{{ comparison.champion.agreement_lower_bound | pct }}</td></tr>
{% endif %}
</tbody>
</table>
{% endif %}
{% if change.figures %}
<details open><summary>Today's report beside the previous champion's
({{ change.previous_champion_partition }}, each on its own day's held-out traces)</summary>
<table>
<thead><tr><th>figure</th><th class="num">previous champion</th><th class="num">today</th>
</tr></thead>
<tbody>
{% for figure in change.figures %}
<tr><td>{{ figure.figure | replace("_", " ") }}</td>
{% for value in (figure.previous_champion, figure.today) %}
<td class="num">
{%- if value is none %}—
{%- elif figure.unit == "fraction" %}{{ value | pct }}
{%- elif figure.unit == "number" %}{{ value | number }}
{%- elif figure.unit == "count" %}{{ value | count }}
{%- else %}{{ value }}{% endif %}</td>
{% endfor %}
</tr>
{% endfor %}
</tbody>
</table>
<table>
<thead><tr><th>teacher label</th><th class="num">coverage, previous champion</th>
<th class="num">coverage today</th><th class="num">change</th></tr></thead>
<tbody>
{% for row in change.per_label %}
<tr><td class="label">{{ row.label }}</td>
<td class="num">{{ row.coverage_previous_champion | pct }}</td>
<td class="num">{{ row.coverage_today | pct }}</td>
<td class="num">{{ row.change | points if row.change is not none else "—" }}</td></tr>
{% endfor %}
</tbody>
</table>
</details>
{% elif not change.champion_before %}
<p class="muted">There was no champion before this deployment.</p>
{% else %}
<p class="muted">The previous champion's report was not found.</p>
{% endif %}
</section>

{% if report.candidates %}
<section id="candidates">
<h2>Candidates fitted today</h2>
<table>
<thead><tr><th>candidate</th><th class="num">fit time (seconds)</th></tr></thead>
<tbody>
{% for candidate in report.candidates %}
<tr><td class="label">{{ candidate.name }}</td>
<td class="num">{{ candidate.fit_seconds | number(2) }}</td></tr>
{% endfor %}
</tbody>
</table>
</section>
{% endif %}

<script>{{ sort_script }}</script>
</body>
</html>
"""
