"""Fig. 3-style examples as HTML: a test study's true report beside each model's top retrieved report, the
findings in which the retrieved study differs (ground truth) listed and the sentences about them highlighted. Shown
on the compare stage's page and on the collaborators' page; every text is escaped."""

from __future__ import annotations

import html
import re

from .vocab import FINDING_NAMES, FINDING_WORDS, glossed

_SENTENCE = re.compile(r"[^。\n]+。?")


def sentence_findings(sentence: str) -> set[str]:
    """The findings a report sentence speaks of (vocab.FINDING_WORDS)."""
    return {f for f, words in FINDING_WORDS.items() if re.search(words, sentence)}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _marked(report: str, true_report: str, differs: list[dict] | None) -> str:
    """A retrieved report, escaped, with the sentences that differ from the true report in <mark>: with ground
    truth (`differs`), the sentences about a finding whose grade differs; without, the sentences the true report
    does not contain."""
    true_set = set(_sentences(true_report))
    diff = {d["finding"] for d in differs} if differs is not None else None
    out = []
    for s in _sentences(report):
        hit = (sentence_findings(s) & diff) if diff is not None else s not in true_set
        out.append(f"<mark>{html.escape(s)}</mark>" if hit else html.escape(s))
    return "".join(out)


def examples_html(records: list[dict], models: tuple[str, ...] | None = None) -> str:
    """Fig. 3-style examples: the true report, and each model's top retrieved report with the differing findings
    (ground truth) listed and the sentences about them highlighted. Every text is escaped. `models`: only these."""
    out = []
    for rec in records:
        parts = [f'<div class="echolib-example"><h4>Test study {html.escape(rec["study_id"])}</h4>',
                 f'<p><strong>True report</strong></p><p class="report" lang="ja">{html.escape(rec["report"])}</p>']
        for r in rec["retrieved"]:
            if models and r["model"] not in models:
                continue
            if r["correct"]:
                parts.append(f'<p class="retrieved correct"><strong>{html.escape(r["model"])}</strong>: retrieved '
                             "the true report first.</p>")
                continue
            truth = r["differs"] if rec.get("has_findings", True) else None
            diff = "; ".join(f'{html.escape(FINDING_NAMES.get(d["finding"], d["finding"]))}: '
                             f'<span lang="ja">{html.escape(glossed(str(d["true"])))} → '
                             f'{html.escape(glossed(str(d["retrieved"])))}</span>'
                             for d in r["differs"]) or "none (a report of the same findings)"
            what = f"findings that differ: {diff}" if truth is not None else "no ground-truth findings to compare"
            parts.append(f'<p class="retrieved"><strong>{html.escape(r["model"])}</strong> retrieved study '
                         f'{html.escape(r["study_id"])}; {what}</p>'
                         f'<p class="report" lang="ja">{_marked(r["report"], rec["report"], truth)}</p>')
        parts.append("</div>")
        out.append("".join(parts))
    note = ("<p>Highlighted: the sentences of a retrieved report about the findings in which its study differs "
            "from the true one (without ground truth: the sentences the true report does not contain).</p>"
            if records else "<p>No examples (no evaluated run).</p>")
    return note + "".join(out)
