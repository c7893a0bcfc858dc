"""Stand-in of 1C:Enterprise's standard OData interface (OData v3, Atom and JSON) and of its file exchange.

Written from the protocol (DESIGN §8), never from Ledgerlink's connector. Start it with
``sandbox.onec.server.make_server``; the service root is ``<url><base>/odata/standard.odata/``, HTTP Basic.
State lives in one SQLite file and survives restarts.

Published sets (``schema.CONFIGURATION``), all shaped as in a real Бухгалтерия предприятия 3.0 base (see
``schema`` for the source of each shape): ``Catalog_Контрагенты`` (country reference, ``КонтактнаяИнформация``,
hierarchy, string lengths), ``Catalog_ДоговорыКонтрагентов`` (organisation, settlement currency, contract kind),
``Catalog_Номенклатура`` (unit of measure by reference), ``Document_РеализацияТоваровУслуг`` (tabular part
``Услуги``, the VAT rate an enumeration value per row), ``Document_СчетФактураВыданный`` (a basis of a composite
type: ``ДокументОснование`` + ``ДокументОснование_Type``), ``Document_ПоступлениеНаРасчетныйСчет`` (tabular part
``РасшифровкаПлатежа``), and the catalogs a base holds from the start, seeded on first start (``schema.SEED``):
``Catalog_СтраныМира``, ``Catalog_ВидыКонтактнойИнформации``, ``Catalog_Валюты``,
``Catalog_КлассификаторЕдиницИзмерения``, ``Catalog_Организации``, ``ChartOfAccounts_Хозрасчетный``;
``ExchangePlan_Ledgerlink`` (node ``BILLING`` is created on first start). What a write does (unknown properties
ignored, long strings cut, unique codes, enumeration values checked, ``If-Match`` honoured or, with
``honour_if_match=False``, ignored) and what posting checks: see ``infobase``.

Wire rules: JSON when asked (``$format=json`` or ``Accept: application/json``), Atom otherwise, as a real
publication answers (guide §17.4.3; ``atom``); ``$metadata`` is XML and ``/$count`` a bare number either way.
``Edm.Int64`` travels as a string, dates as ``2026-01-31T00:00:00`` (no zone), numbers (``Edm.Double``, as real
bases type them) as a JSON number with their exact decimal text (``1200.50``), empty references as the zero guid,
empty dates as ``0001-01-01T00:00:00``, an empty composite attribute as ``""`` with ``<Name>_Type``
``StandardODATA.Undefined``, an enumeration value as its name (``"НДС22"``). Objects carry
``<Nav>@navigationLinkUrl`` beside each reference, as 1C writes them; rows of a tabular part carry the document's
``Ref_Key`` and ``LineNumber``. Errors: ``{"odata.error": {"code": "9", "message": {"lang": "ru", "value":
"..."}}}`` in JSON, ``<m:error>`` otherwise (codes in ``errors``).
Query options, filter functions and navigation paths: ``odata`` and ``filters``. The web server in front (URL
limits, an HTML login page): ``server``.

Change tracking (exchange plan ``ExchangePlan_Ledgerlink``, guide §17.4.13.3). Every create, change, post or
delete of an object, through OData, the admin edit or a CSV register, registers it for every node (one
registration per node and object; a new change replaces the previous one and clears its message stamp).
Objects arriving in an EnterpriseData message are not registered back to the node that sent them.

``POST <root>SelectChanges?DataExchangePoint='<node URL>'&MessageNo=N``, the node named by its canonical URL
as an OData string literal (``'http://host/demo/odata/standard.odata/ExchangePlan_Ledgerlink(guid''...'')'``;
inner quotes doubled or not; relative to the service root is accepted too), stamps every unstamped
registration of the node with N, sets the node's ``SentNo`` to N and answers all its registrations, oldest
first, as an Atom feed: a changed object is an ``<entry>`` as GET answers it, a deleted one an
``<at:deleted-entry ref="<its URL>" when="...">`` (``xmlns:at="http://purl.org/atompub/tombstones/1.0"``).

``POST <root>NotifyChangesReceived?DataExchangePoint='<node URL>'&MessageNo=N`` removes the registrations
stamped with N or less (those re-registered since are kept: their stamp was cleared), sets the node's
``ReceivedNo`` and answers 204. Until acknowledged, a change is answered again by every SelectChanges.
What is still registered is visible without stamping at ``GET /_sandbox/onec/changes`` (``server``).

File exchange: see ``exchange`` (EnterpriseData subset, acknowledgement message, CSV registers).

Bank statements: see ``bank``. Given ``bank_statement`` (a JSON statement), the poller (and
``POST /_sandbox/onec/bank/import``) turns its lines into posted ``Document_ПоступлениеНаРасчетныйСчет`` receipts
once each payer is a counterparty, as an accountant's daily statement import does; each is registered for every
node. ``node_codes`` names the exchange plan's nodes (the sandbox: ``BILLING`` and ``PAYMENTS``).
"""
