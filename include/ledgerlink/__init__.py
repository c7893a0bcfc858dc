"""Ledgerlink: moves money data between billing, 1C:Enterprise, an ERP, a CRM and e-invoice integrators.

Plain functions that Airflow tasks call; nothing here needs a scheduler to run or to test.
"""

__version__ = "0.1.0"
