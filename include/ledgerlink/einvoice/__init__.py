"""Turkish e-invoices (GİB UBL-TR 1.2) through several private integrators: the documents, the routing, the
integrators' clients and the safe failover between them (DESIGN §8)."""
