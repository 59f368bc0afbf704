"""The HTML report: self-contained, escaped, with the frontier plot and the sortable label table."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from tracer_pipeline.report.build import build_report
from tracer_pipeline.report.render import frontier_svg, render_report_html

HOSTILE_INPUT = "<script>alert(1)</script> my card <b>vanished</b>"
PRICE_PER_LLM_CALL = 0.002
DAILY_TRAFFIC = 10_000
URL_INPUT = "see https://evil.example/x.js and <img src=https://evil.example/p.png>"


class _PageElements(HTMLParser):
    """Start tags of a page with their attributes, and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parse(html: str) -> _PageElements:
    page = _PageElements()
    page.feed(html)
    page.close()
    return page


def _render(holdout, gate, deployment, history=()) -> str:
    report = build_report(
        partition="2026-01-05",
        holdout=holdout,
        gate=gate,
        deployment=deployment,
        n_traces=40,
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        price_per_llm_call=PRICE_PER_LLM_CALL,
        daily_traffic=DAILY_TRAFFIC,
        history=history,
    )
    return render_report_html(report)


@pytest.fixture
def hostile_holdout(holdout) -> pd.DataFrame:
    # t3 is a handled disagreement, so it is shown as an example and as a confusion; t8 is
    # deferred, so it is shown among the deferred examples.
    holdout = holdout.copy()
    holdout.loc[holdout["trace_id"] == "t3", "input"] = HOSTILE_INPUT
    holdout.loc[holdout["trace_id"] == "t8", "input"] = URL_INPUT
    holdout.loc[holdout["trace_id"] == "t8", "teacher"] = "<i>close</i>"
    return holdout


def test_page_has_the_frontier_svg_and_the_sortable_per_label_table(
    holdout, deploying_gate, promoted
):
    page = _parse(_render(holdout, deploying_gate, promoted))

    ids = {attrs.get("id"): tag for tag, attrs in page.tags if attrs.get("id")}
    assert ids["frontier-plot"] == "svg"
    assert ids["per-label-table"] == "table"
    table_classes = [
        attrs.get("class") for tag, attrs in page.tags if attrs.get("id") == "per-label-table"
    ]
    assert table_classes == ["sortable"]


def test_frontier_plot_draws_one_point_per_alpha_and_marks_refused_ones(deploying_gate):
    svg = str(frontier_svg(deploying_gate["frontier"], 0.9))

    assert svg.count("<circle") == 4
    assert svg.count('class="point refused"') == 1
    assert "<polyline" in svg
    for tick in ("0.80", "0.85", "0.90", "0.95", "0.99"):
        assert f">{tick}</text>" in svg


def test_per_label_table_has_a_row_per_label_with_sort_keys(holdout, deploying_gate, promoted):
    html = _render(holdout, deploying_gate, promoted)

    start = html.index('id="per-label-table"')
    table = html[start : html.index("</table>", start)]
    assert re.findall(r'<td class="label" data-value="([^"]+)"', table) == [
        "card_lost",
        "card_stolen",
        "close_account",
    ]
    assert 'data-value="0.75">75.0%</td>' in table
    assert 'data-value="">—</td>' in table  # close_account: agreement undefined, sorts last


def test_numbers_are_shown_as_percentages_with_their_meaning(holdout, deploying_gate, promoted):
    html = _render(holdout, deploying_gate, promoted)

    assert "50.0%" in html and "coverage on held-out traces" in html
    assert "75.0%" in html and "agreement on handled held-out traces" in html
    assert "90.3%" in html and "certified agreement lower bound (calibration traces" in html


def test_page_makes_no_external_requests(hostile_holdout, deploying_gate, promoted):
    html = _render(hostile_holdout, deploying_gate, promoted)
    page = _parse(html)

    for _tag, attrs in page.tags:
        for name in ("src", "href", "action", "xlink:href", "srcset", "poster", "data"):
            value = attrs.get(name)
            assert value is None or not re.match(r"\s*(https?:)?//", value), (name, value)
    assert [tag for tag, _ in page.tags if tag in {"link", "img", "iframe", "object"}] == []
    styles = "".join(re.findall(r"<style>(.*?)</style>", html, flags=re.S))
    assert "url(" not in styles and "@import" not in styles


def test_page_without_urls_in_its_traces_contains_no_url_at_all(holdout, deploying_gate, promoted):
    html = _render(holdout, deploying_gate, promoted)

    assert "http://" not in html
    assert "https://" not in html


def test_trace_text_and_labels_are_escaped(hostile_holdout, deploying_gate, promoted):
    html = _render(hostile_holdout, deploying_gate, promoted)
    page = _parse(html)

    assert "&lt;script&gt;alert(1)&lt;/script&gt; my card &lt;b&gt;vanished&lt;/b&gt;" in html
    assert "&lt;img src=https://evil.example/p.png&gt;" in html
    assert "&lt;i&gt;close&lt;/i&gt;" in html
    assert "alert(1)" not in "".join(page.scripts)
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert not any(tag in {"b", "i", "img"} for tag, _ in page.tags)


def test_the_only_script_is_the_one_the_content_security_policy_allows(
    holdout, deploying_gate, promoted
):
    page = _parse(_render(holdout, deploying_gate, promoted))

    policies = [
        attrs["content"]
        for tag, attrs in page.tags
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    ]
    assert len(policies) == 1
    assert "default-src 'none'" in policies[0]
    (script,) = page.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policies[0]


def test_coverage_change_since_the_previous_day_is_shown(holdout, deploying_gate, promoted):
    history = [{"partition": "2026-01-04", "per_label": {"card_lost": 0.5}}]

    html = _render(holdout, deploying_gate, promoted, history=history)

    assert "coverage change since 2026-01-04" in html
    assert "+25.0 pts" in html


def test_refused_gate_renders_a_notice_and_no_threshold(holdout, refusing_gate):
    refused_holdout = holdout.assign(handled=False, defer_reason="gate_refused")
    deployment = {"decision": "refused", "champion_version": None, "reason": None}

    html = _render(refused_holdout, refusing_gate, deployment)

    assert "The gate refused:" in html
    assert "no threshold certifies agreement 90% at confidence 95%." in html
    assert "every trace goes\nto the LLM" in html
    assert "No held-out trace was handled." in html
    assert 'id="frontier-plot"' in html


def test_empty_holdout_and_empty_frontier_render(deploying_gate, promoted):
    gate = {**deploying_gate, "frontier": []}

    html = _render(pd.DataFrame(), gate, promoted)

    assert "No held-out traces for this partition." in html
    assert "no frontier was computed" in html
    assert 'id="per-label-table"' in html
    assert "No held-out trace was deferred." in html


def test_cost_saved_shows_the_price_per_call_to_the_tenth_of_a_cent(
    holdout, deploying_gate, promoted
):
    html = _render(holdout, deploying_gate, promoted)

    # 50% held-out coverage of 10,000 daily calls at $0.002 each.
    assert "5,000\n    of 10,000 daily calls at $0.002 each" in html
    assert '<div class="value" id="cost-saved">$10.00</div>' in html


def test_headline_shows_alpha_and_delta(holdout, deploying_gate, promoted):
    html = _render(holdout, deploying_gate, promoted)

    assert '<div class="value">90%</div>' in html
    assert '<div class="value">5%</div>' in html and "δ, allowed chance" in html


def test_defer_reasons_show_largest_count_first_after_a_json_round_trip(
    holdout, deploying_gate, promoted
):
    report = build_report(
        partition="2026-01-05",
        holdout=holdout,
        gate=deploying_gate,
        deployment=promoted,
        n_traces=40,
        embedding_model="sentence-transformers/all-MiniLM-L6-v2",
        price_per_llm_call=PRICE_PER_LLM_CALL,
        daily_traffic=DAILY_TRAFFIC,
    )
    # As the asset writes it: keys sorted, so "label_rarely_seen" comes before "low_confidence".
    stored = json.loads(json.dumps(report, sort_keys=True))

    html = render_report_html(stored)

    section = html[html.index('id="defer-reasons"') : html.index('id="confusions"')]
    low, rare = section.index("<td>low confidence</td>"), section.index("<td>label rarely seen")
    assert low < rare  # 2 traces before 1
    assert "low confidence: 1, neighbours disagree: 1" in section  # card_stolen, ties by code


def test_over_time_names_plateaus_with_their_gain(holdout, deploying_gate, promoted):
    history = [
        {"partition": "2026-01-03", "n_traces": 20, "per_label": {"card_lost": 0.9,
                                                                  "card_stolen": 0.1}},
        {"partition": "2026-01-04", "n_traces": 30, "per_label": {"card_lost": 0.8,
                                                                  "card_stolen": 0.2}},
    ]

    html = _render(holdout, deploying_gate, promoted, history=history)

    section = html[html.index('id="over-time"') : html.index('id="champion-change"')]
    assert 'class="flag">plateau (-15.0 pts)</td>' in section
    assert ">growing (+13.3 pts)</td>" in section
    assert ">—</td>" in section  # close_account: one day only


def test_a_label_at_full_coverage_is_not_flagged_as_a_plateau(holdout, deploying_gate, promoted):
    everything_handled = holdout.assign(handled=True, defer_reason=None)
    history = [
        {"partition": day, "n_traces": count, "per_label": {"card_lost": 1.0}}
        for day, count in (("2026-01-03", 20), ("2026-01-04", 30))
    ]

    html = _render(everything_handled, deploying_gate, promoted, history=history)

    section = html[html.index('id="over-time"') : html.index('id="champion-change"')]
    assert ">full coverage (+0.0 pts)</td>" in section
    assert 'class="flag"' not in section


def test_a_refusal_is_explained_once(holdout, refusing_gate):
    refused_holdout = holdout.assign(handled=False, defer_reason="gate_refused")
    deployment = {
        "decision": "refused",
        "champion_version": None,
        "reason": f"gate refused: {refusing_gate['reason']}",
    }

    html = _render(refused_holdout, refusing_gate, deployment)

    header = html[: html.index('<section id="headline">')]
    assert header.count(refusing_gate["reason"]) == 1


def test_a_refusal_with_a_champion_in_service_says_the_champion_keeps_serving(
    holdout, refusing_gate
):
    refused_holdout = holdout.assign(handled=False, defer_reason="gate_refused")
    deployment = {"decision": "refused", "champion_version": "3", "reason": "gate refused"}

    html = _render(refused_holdout, refusing_gate, deployment)

    assert "the champion (version 3),\ncertified on an earlier day, keeps serving" in html
    assert "every trace goes" not in html
