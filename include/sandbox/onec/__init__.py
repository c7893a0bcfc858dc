"""Stand-in of 1C:Enterprise's standard OData interface (OData v3, JSON) and of its file exchange.

Written from the protocol (DESIGN §8), never from Ledgerlink's connector. Start it with
``sandbox.onec.server.make_server``; the service root is ``<url><base>/odata/standard.odata/``, HTTP Basic.
State lives in one SQLite file and survives restarts.

Published sets (``schema.CONFIGURATION``): ``Catalog_Контрагенты``, ``Catalog_ДоговорыКонтрагентов``,
``Catalog_Номенклатура``, ``Document_РеализацияТоваровУслуг`` (tabular part ``Услуги``),
``Document_СчетФактураВыданный``, ``Document_ПоступлениеНаРасчетныйСчет``, ``ExchangePlan_Ledgerlink``
(node ``BILLING`` is created on first start).

Wire rules: JSON only when asked (``$format=json`` or ``Accept: application/json``), otherwise 406 (real 1C
answers Atom; ``$metadata`` is XML and ``/$count`` a bare number either way). ``Edm.Int64`` travels as a
string, dates as ``2026-01-31T00:00:00`` (no zone), ``Edm.Decimal`` as a JSON number with its exact decimal
text (``1200.50``), empty references as the zero guid, empty dates as ``0001-01-01T00:00:00``. Objects carry
``<Nav>@navigationLinkUrl`` beside each reference, as 1C writes them; rows of a tabular part carry the
document's ``Ref_Key`` and ``LineNumber``. Errors: ``{"odata.error": {"code": "9", "message": {"lang": "ru",
"value": "..."}}}`` (codes in ``errors``).

Change tracking (exchange plan ``ExchangePlan_Ledgerlink``). Every create, change, post or delete of an
object, through OData, the admin edit or a CSV register, registers it for every node (one registration per
node and object; a new change replaces the previous one and clears its message stamp). Objects arriving in an
EnterpriseData message are not registered back to the node that sent them.

``GET <root>SelectChanges?DataExchangePoint='BILLING'&MessageNo=N`` (the node by its Code, quoted or not,
or as ``ExchangePlan_Ledgerlink(guid'...')``) stamps every unstamped registration of the node with N, sets
the node's ``SentNo`` to N and answers all its registrations, oldest first::

    {"odata.metadata": "<root>$metadata#SelectChanges",
     "DataExchangePoint": "BILLING", "MessageNo": "N",
     "value": [{"EntitySet": "Catalog_Контрагенты", "Ref_Key": "<guid>", "DataVersion": "<opaque>",
                "DeletionMark": false, "Deleted": false, "MessageNo": "<the stamp, may be below N>",
                "Object": {<the object as GET returns it, without odata.metadata>}},
               {"EntitySet": "...", "Ref_Key": "...", "DataVersion": "<last version>", "DeletionMark": ...,
                "Deleted": true, "MessageNo": "N", "Object": null}]}

``POST <root>NotifyChangesReceived?DataExchangePoint='BILLING'&MessageNo=N`` removes the registrations
stamped with N or less (those re-registered since are kept: their stamp was cleared), sets the node's
``ReceivedNo`` and answers ``{"DataExchangePoint": "BILLING", "MessageNo": "N", "Removed": "3",
"Remaining": "1"}``. Until acknowledged, a change is answered again by every SelectChanges.

File exchange: see ``exchange`` (EnterpriseData subset, acknowledgement message, CSV registers).
"""
