# The image docker-compose.yaml runs: Airflow 3.3 with Ledgerlink's pinned requirements and its code.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /opt/ledgerlink/requirements.txt
RUN pip install --no-cache-dir -r /opt/ledgerlink/requirements.txt
COPY include /opt/airflow/include
COPY dags /opt/airflow/dags
COPY plugins /opt/airflow/plugins
ENV PYTHONPATH=/opt/airflow/include
