import json

import altair as alt
import nbformat
import pytest
from nbclient import NotebookClient

from echolib.report import build_index, notebook_to_html


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    d = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title $x^2$"),
                nbformat.v4.new_code_cell(
                    "import altair as alt, pandas as pd\nfrom echolib.report import setup_notebook\nsetup_notebook()\n"
                    "alt.Chart(pd.DataFrame({'a': [1, 2]})).mark_bar().encode(x='a')")]
    NotebookClient(nb, kernel_name="python3").execute()
    path = d / "demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_html_is_offline_and_chart_is_inline(executed):
    html = notebook_to_html(executed).read_text()
    assert "require.min.js" not in html and "MathJax" not in html.replace("mathjax", "")
    assert "<script src=" not in html
    assert "image/svg+xml" in html or "<svg" in html  # the Altair chart travels inside the page
    assert "vega@" not in html and "cdn.jsdelivr" not in html


def test_index_links_pages_relatively(tmp_path, executed):
    page = notebook_to_html(executed, tmp_path / "notebooks" / "demo.html")
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"studies": 3}))
    index = build_index(tmp_path / "index.html", [page], "Demo", [m]).read_text()
    assert 'href="notebooks/demo.html"' in index and '&quot;studies&quot;: 3' in index
    with pytest.raises(FileNotFoundError, match="missing.html"):
        build_index(tmp_path / "index.html", [tmp_path / "missing.html"], "Demo")


def test_svg_helper():
    svg = __import__("echolib.report", fromlist=["chart_to_svg"]).chart_to_svg(
        alt.Chart(alt.Data(values=[{"a": 1}])).mark_point().encode(x="a:Q"))
    assert svg.lstrip().startswith("<svg")
