"""The browser check on a small site built the way the pipeline builds one: it passes on a good site, and finds
a missing Japanese font, a request that would leave the machine and report text that is not inert."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from echolib.site import export, site_nav
from tests.browser import check_site, only_fonts

pytestmark = pytest.mark.usefixtures("chromium")

HOSTILE = '左室拡大なし。<img src="http://203.0.113.9/x.png" onerror="document.title=1"><script>document.title=2</script>'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    code = f"""
from IPython.display import HTML, display
import altair as alt, pandas as pd
from echolib.examples import examples_html
from echolib.report import banner_html
from echolib.display import setup_notebook
setup_notebook()
facts = dict(profile="tiny", changed=[], source="synthetic", patients=1, studies=2, clips=3, kept_clips=3,
             evaluation_studies=2, test_patients=1, seeds=[0], git="abc", params_digest="d", date="now", smoke=True)
display(HTML(banner_html(facts)))
display(HTML("<h2>Table 1</h2>"))
display(HTML(examples_html([dict(study_id="S", report={HOSTILE!r}, retrieved=[])])))
alt.Chart(pd.DataFrame({{"所見": ["左室", "右室"], "n": [1, 2]}})).mark_bar().encode(x="n", y="所見")
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, kernel_name="python3").execute()
    nbformat.write(nb, d / "report.ipynb")
    pages = [("report", d / "report.ipynb", Path("site/index.html")),
             ("compare", d / "report.ipynb", Path("site/stages/99.html"))]
    export(d / "report.ipynb", d / "site" / "index.html", "reader", nav=site_nav(pages, pages[0][2]))
    export(d / "report.ipynb", d / "site" / "stages" / "99.html", "stage", home="../index.html",
           nav=site_nav(pages, pages[1][2]), smoke=True)
    return d / "site"


def test_a_good_site_passes_and_the_first_page_is_photographed(site, tmp_path):
    res = check_site(site, tmp_path / "shots")
    first = res["pages"]["index.html"]
    assert res["ok"], res
    assert res["blocked_requests"] == [] and res["charts"] == 2
    assert first["banner"] and first["smoke_warning"] and first["cjk_characters_checked"] >= 4
    assert first["search"] and res["pages"]["stages/99.html"]["sidebar_pages"] == 2
    assert first["title"] != "1" and first["title"] != "2"  # the report text's markup did nothing
    assert (tmp_path / "shots" / "index-top.png").stat().st_size > 10_000


def test_a_table_past_the_column_and_a_broken_search_fail_the_check(site, tmp_path):
    """A table wider than the column outside any scrolling container is cut off; the same table inside a
    notebook output (which scrolls sideways) is not; a sidebar whose search does nothing fails."""
    wide = '<table style="width:3000px"><tr><td>Table 1 row</td></tr></table>'
    for name, old, new, cut in (("cut", "</main>", wide + "</main>", True),
                                ("scrolls", '<div class="jp-OutputArea-output', '<div class="jp-OutputArea-output">'
                                 + wide + '</div><div class="jp-OutputArea-output', False)):
        d = tmp_path / name
        (d / "stages").mkdir(parents=True)
        (d / "index.html").write_text((site / "index.html").read_text().replace(old, new, 1))
        (d / "stages" / "99.html").write_text((site / "stages" / "99.html").read_text())
        res = check_site(d)
        assert bool(res["pages"]["index.html"]["cut_off"]) is cut, res["pages"]["index.html"]["cut_off"]
        assert res["ok"] is not cut
    d = tmp_path / "nosearch"
    (d / "stages").mkdir(parents=True)
    page = (site / "index.html").read_text()
    (d / "index.html").write_text(page.replace("box.addEventListener('input'", "box.addEventListener('x'"))
    (d / "stages" / "99.html").write_text((site / "stages" / "99.html").read_text())
    res = check_site(d)
    assert not res["ok"] and res["pages"]["index.html"]["search"] is False


def test_a_missing_japanese_font_is_found(site, tmp_path):
    res = check_site(site, env=only_fonts(["/usr/share/fonts/truetype/dejavu"], tmp_path))
    assert not res["ok"] and "左" in res["pages"]["index.html"]["missing_glyphs"]


def test_a_request_off_the_machine_fails_the_check(site, tmp_path):
    bad = tmp_path / "bad"
    (bad / "stages").mkdir(parents=True)
    page = (site / "index.html").read_text().replace("</main>", '<img src="https://example.org/x.png"></main>')
    (bad / "index.html").write_text(page)
    res = check_site(bad)
    assert not res["ok"] and res["blocked_requests"] == ["https://example.org/x.png"]
