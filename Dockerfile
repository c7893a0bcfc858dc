# The image docker-compose.yaml runs: Airflow 3.3 with Ledgerlink's pinned runtime requirements (not the test
# ones) and Ledgerlink installed as a package: the `ledgerlink` command, the plugin and provider entry points.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /opt/ledgerlink/requirements.txt
RUN pip install --no-cache-dir -r /opt/ledgerlink/requirements.txt
# pip builds in the source folder, so the airflow user must own it.
COPY --chown=airflow:0 pyproject.toml /opt/ledgerlink/pyproject.toml
COPY --chown=airflow:0 include /opt/ledgerlink/include
RUN pip install --no-cache-dir --no-deps /opt/ledgerlink
COPY dags /opt/airflow/dags
COPY plugins /opt/airflow/plugins
