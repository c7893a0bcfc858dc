"""The billing system: customers' accounts, contracts, tariffs, usage, invoices, payments (SQL)."""
