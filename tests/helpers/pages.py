"""The web interface's pages, each with the selector that shows its key content has been drawn:
tests/web/test_pages.py times them and bench/web_pages.py measures them on a quiet machine."""

PAGES = {
    "/": "#models tbody tr",
    "/models/digits": "#versions tbody tr",
    "/models/digits/versions/1": "svg.graph g.node",
    "/models/digits/versions/1/kernels": "#kernels .filter",
    "/models/digits/versions/1/classify": "#images",
    "/editor": "#inspect-table",
}
