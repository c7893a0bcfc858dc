-- One PostgreSQL server for the production-like deployment: Airflow's metadata, the ledger, and the
-- sandbox's billing and ERP databases (in production those two are the customer's own servers).
CREATE DATABASE ledger;
CREATE DATABASE billing;
CREATE DATABASE erp;
