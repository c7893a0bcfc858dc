"""1C:Enterprise: the standard OData interface (and, next, the EnterpriseData file exchange)."""
