"""The Exchange ledger page inside Airflow's UI (issue 23): :mod:`~ledgerlink.ui.app` (the FastAPI app the
plugin mounts, and who may read it), :mod:`~ledgerlink.ui.queries` (what each tab and the search read) and
``page.html`` (the page itself: no framework, nothing fetched from outside)."""
