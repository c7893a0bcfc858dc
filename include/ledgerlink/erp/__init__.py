"""The ERP: legal customer data, products, stock, sales orders, and the billed lines it books (SQL)."""
