"""UBL-TR 1.2 invoice documents: built from plain records, in ``Decimal``, and checked structurally.

What GİB's schematron checks that we can run here: well-formed XML, the required elements in UBL's order, the
number's and the ETTN's form, the profile and type code, VKN/TCKN check digits, and totals that add up (each
line's amount is quantity × price, its VAT half-up at its rate; the document's line, tax, tax-inclusive and
payable totals are the sums). A credit note (IADE) carries positive amounts, like any invoice, and names the
invoice it returns (``BillingReference``).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from lxml import etree

from ledgerlink.einvoice.codes import (EARSIV, EARSIVFATURA, EFATURA, IADE, PROFILES, SATIS, TEMELFATURA,  # noqa: F401
                                       TICARIFATURA, TYPE_CODES)
from ledgerlink.errors import TerminalError
from ledgerlink.taxids import is_valid_tax_id

INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
NSMAP = {None: INVOICE_NS, "cbc": CBC, "cac": CAC}
NS = {"inv": INVOICE_NS, "cbc": CBC, "cac": CAC}

NUMBER = re.compile(r"^[A-Z0-9]{3}20\d{2}\d{9}$")
CENT = Decimal("0.01")
KDV_TAX_TYPE = "0015"  # GİB's code for KDV (VAT)
MINUTE = "MIN"  # UN/ECE Recommendation 20: minute (billing bills participant-minutes)


class DocumentError(TerminalError):
    """An invoice cannot become a valid UBL-TR document; names the invoice and the field."""

    def __init__(self, invoice_id: str, field_name: str, problem: str):
        super().__init__(f"e-invoice for billing invoice {invoice_id}: {field_name}: {problem}")
        self.invoice_id = invoice_id
        self.field = field_name
        self.problem = problem


@dataclass(frozen=True)
class Party:
    tax_id: str  # VKN (10 digits) or TCKN (11 digits)
    name: str
    street: str
    city: str
    country: str = "Türkiye"
    tax_office: str = ""

    @property
    def scheme(self) -> str:
        return "VKN" if len(self.tax_id) == 10 else "TCKN"


@dataclass(frozen=True)
class Line:
    line_no: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    net: Decimal
    vat_rate: Decimal
    vat: Decimal
    unit_code: str = MINUTE


@dataclass(frozen=True)
class InvoiceDocument:
    invoice_id: str  # billing's key
    ettn: str
    number: str
    profile: str
    type_code: str
    issue_date: date
    currency: str
    supplier: Party
    customer: Party
    lines: tuple[Line, ...]
    period: tuple[date, date] | None = None
    returned_invoice: tuple[str, date] | None = None  # IADE: the number and date of the invoice it returns
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def line_total(self) -> Decimal:
        return sum((line.net for line in self.lines), Decimal("0.00"))

    @property
    def tax_total(self) -> Decimal:
        return sum((line.vat for line in self.lines), Decimal("0.00"))

    @property
    def payable(self) -> Decimal:
        return self.line_total + self.tax_total

    def tax_subtotals(self) -> list[tuple[Decimal, Decimal, Decimal]]:
        """(rate, taxable, tax) per VAT rate, ascending."""
        by_rate: dict[Decimal, list[Decimal]] = {}
        for line in self.lines:
            taxable, tax = by_rate.setdefault(line.vat_rate, [Decimal("0.00"), Decimal("0.00")])
            by_rate[line.vat_rate] = [taxable + line.net, tax + line.vat]
        return [(rate, taxable, tax) for rate, (taxable, tax) in sorted(by_rate.items())]


def money(minor: int) -> Decimal:
    """Minor units (kuruş) as a two-place Decimal."""
    return (Decimal(int(minor)) / 100).quantize(CENT)


def half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def ettn_for(supplier_tax_id: str, invoice_id: str) -> str:
    """The invoice's ETTN, derived from the supplier and billing's key: the same on every machine, so even a
    ledger restored from an old backup cannot give an invoice a second identity at GİB."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:ledgerlink:einvoice:{supplier_tax_id}:{invoice_id}"))


# building ------------------------------------------------------------------------------------------------------
def _sub(parent, tag: str, text=None, **attributes):
    prefix, name = tag.split(":")
    node = etree.SubElement(parent, f"{{{CBC if prefix == 'cbc' else CAC}}}{name}", attributes)
    if text is not None:
        node.text = str(text)
    return node


def _amount(parent, tag: str, value: Decimal, currency: str):
    return _sub(parent, tag, f"{value:.2f}", currencyID=currency)


def _party(parent, tag: str, party: Party, *, person: bool):
    node = _sub(_sub(parent, tag), "cac:Party")
    _sub(_sub(node, "cac:PartyIdentification"), "cbc:ID", party.tax_id, schemeID=party.scheme)
    if not person:
        _sub(_sub(node, "cac:PartyName"), "cbc:Name", party.name)
    address = _sub(node, "cac:PostalAddress")
    _sub(address, "cbc:StreetName", party.street)
    _sub(address, "cbc:CitySubdivisionName", party.city)
    _sub(address, "cbc:CityName", party.city)
    _sub(_sub(address, "cac:Country"), "cbc:Name", party.country)
    if party.tax_office:
        _sub(_sub(_sub(node, "cac:PartyTaxScheme"), "cac:TaxScheme"), "cbc:Name", party.tax_office)
    if person:
        first, _, family = party.name.rpartition(" ")
        person_node = _sub(node, "cac:Person")
        _sub(person_node, "cbc:FirstName", first or party.name)
        _sub(person_node, "cbc:FamilyName", family)


def _tax_total(parent, subtotals, currency: str):
    total = _sub(parent, "cac:TaxTotal")
    _amount(total, "cbc:TaxAmount", sum((tax for _, _, tax in subtotals), Decimal("0.00")), currency)
    for rate, taxable, tax in subtotals:
        sub = _sub(total, "cac:TaxSubtotal")
        _amount(sub, "cbc:TaxableAmount", taxable, currency)
        _amount(sub, "cbc:TaxAmount", tax, currency)
        _sub(sub, "cbc:Percent", f"{rate:f}")
        scheme = _sub(_sub(sub, "cac:TaxCategory"), "cac:TaxScheme")
        _sub(scheme, "cbc:Name", "KDV")
        _sub(scheme, "cbc:TaxTypeCode", KDV_TAX_TYPE)


def build_tree(doc: InvoiceDocument) -> etree._Element:
    """The UBL-TR ``Invoice`` element for ``doc`` (UBL's element order)."""
    c = doc.currency
    root = etree.Element(f"{{{INVOICE_NS}}}Invoice", nsmap=NSMAP)
    _sub(root, "cbc:UBLVersionID", "2.1")
    _sub(root, "cbc:CustomizationID", "TR1.2")
    _sub(root, "cbc:ProfileID", doc.profile)
    _sub(root, "cbc:ID", doc.number)
    _sub(root, "cbc:CopyIndicator", "false")
    _sub(root, "cbc:UUID", doc.ettn)
    _sub(root, "cbc:IssueDate", doc.issue_date.isoformat())
    _sub(root, "cbc:InvoiceTypeCode", doc.type_code)
    for note in doc.notes:
        _sub(root, "cbc:Note", note)
    _sub(root, "cbc:DocumentCurrencyCode", c)
    _sub(root, "cbc:LineCountNumeric", len(doc.lines))
    if doc.period:
        period = _sub(root, "cac:InvoicePeriod")
        _sub(period, "cbc:StartDate", doc.period[0].isoformat())
        _sub(period, "cbc:EndDate", doc.period[1].isoformat())
    if doc.returned_invoice:
        reference = _sub(_sub(root, "cac:BillingReference"), "cac:InvoiceDocumentReference")
        _sub(reference, "cbc:ID", doc.returned_invoice[0])
        _sub(reference, "cbc:IssueDate", doc.returned_invoice[1].isoformat())
    if doc.profile == EARSIVFATURA:
        # e-Arşiv: how the invoice reaches its recipient (GİB's "gönderim şekli").
        sending = _sub(root, "cac:AdditionalDocumentReference")
        _sub(sending, "cbc:ID", "ELEKTRONIK")
        _sub(sending, "cbc:IssueDate", doc.issue_date.isoformat())
        _sub(sending, "cbc:DocumentTypeCode", "GONDERIM_SEKLI")
    _party(root, "cac:AccountingSupplierParty", doc.supplier, person=False)
    _party(root, "cac:AccountingCustomerParty", doc.customer, person=doc.customer.scheme == "TCKN")
    _tax_total(root, doc.tax_subtotals(), c)
    totals = _sub(root, "cac:LegalMonetaryTotal")
    _amount(totals, "cbc:LineExtensionAmount", doc.line_total, c)
    _amount(totals, "cbc:TaxExclusiveAmount", doc.line_total, c)
    _amount(totals, "cbc:TaxInclusiveAmount", doc.payable, c)
    _amount(totals, "cbc:AllowanceTotalAmount", Decimal("0.00"), c)
    _amount(totals, "cbc:PayableAmount", doc.payable, c)
    for line in doc.lines:
        node = _sub(root, "cac:InvoiceLine")
        _sub(node, "cbc:ID", line.line_no)
        _sub(node, "cbc:InvoicedQuantity", f"{line.quantity:f}", unitCode=line.unit_code)
        _amount(node, "cbc:LineExtensionAmount", line.net, c)
        _tax_total(node, [(line.vat_rate, line.net, line.vat)], c)
        _sub(_sub(node, "cac:Item"), "cbc:Name", line.description)
        _amount(_sub(node, "cac:Price"), "cbc:PriceAmount", line.unit_price, c)
    return root


def build_ubl(doc: InvoiceDocument) -> bytes:
    """The document as UTF-8 XML bytes, checked first: a document that would fail GİB's checks never leaves."""
    problems = check_document(doc)
    if problems:
        raise DocumentError(doc.invoice_id, problems[0][0], "; ".join(p for _, p in problems))
    return etree.tostring(build_tree(doc), xml_declaration=True, encoding="UTF-8")


def check_document(doc: InvoiceDocument) -> list[tuple[str, str]]:
    """(field, problem) for everything in ``doc`` GİB would refuse; [] when it is sound."""
    problems = []
    if not NUMBER.match(doc.number):
        problems.append(("number", f"{doc.number!r} is not series (3) + year (4) + sequence (9)"))
    elif int(doc.number[3:7]) != doc.issue_date.year:
        problems.append(("number", f"{doc.number} is of year {doc.number[3:7]}, the invoice of {doc.issue_date}"))
    try:
        uuid.UUID(doc.ettn)
    except ValueError:
        problems.append(("ettn", f"{doc.ettn!r} is not a UUID"))
    allowed = PROFILES[EFATURA] + PROFILES[EARSIV]
    if doc.profile not in allowed:
        problems.append(("profile", f"{doc.profile!r} is not one of {allowed}"))
    if doc.type_code not in TYPE_CODES:
        problems.append(("type_code", f"{doc.type_code!r} is not one of {TYPE_CODES}"))
    if doc.type_code == IADE and doc.returned_invoice is None:
        problems.append(("returned_invoice", "a credit note (IADE) must name the invoice it returns"))
    for role, party in (("supplier", doc.supplier), ("customer", doc.customer)):
        if not is_valid_tax_id("TR", party.tax_id) or not party.tax_id.isdigit():
            problems.append((f"{role}.tax_id", f"{party.tax_id!r} is not a VKN or TCKN with valid check digits"))
        for name in ("name", "street", "city"):
            if not getattr(party, name).strip():
                problems.append((f"{role}.{name}", "missing"))
    if not doc.lines:
        problems.append(("lines", "an invoice needs at least one line"))
    for line in doc.lines:
        where = f"line {line.line_no}"
        if min(line.quantity, line.unit_price, line.net, line.vat) < 0:
            problems.append((where, "amounts on the document are never negative (a credit note is type IADE)"))
        if half_up(line.quantity * line.unit_price) != line.net:
            problems.append((where, f"amount {line.net} is not quantity {line.quantity} × price {line.unit_price}"))
        if half_up(line.net * line.vat_rate / 100) != line.vat:
            problems.append((where, f"VAT {line.vat} is not {line.vat_rate}% of {line.net} (half-up)"))
    return problems


# checking a document as it will travel -----------------------------------------------------------------------
def _text(node, path: str) -> str:
    found = node.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


def _decimal(node, path: str) -> Decimal:
    text = _text(node, path)
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{path} is not a number: {text!r}") from None


REQUIRED = ("cbc:UBLVersionID", "cbc:CustomizationID", "cbc:ProfileID", "cbc:ID", "cbc:CopyIndicator", "cbc:UUID",
            "cbc:IssueDate", "cbc:InvoiceTypeCode", "cbc:DocumentCurrencyCode", "cbc:LineCountNumeric",
            "cac:AccountingSupplierParty", "cac:AccountingCustomerParty", "cac:TaxTotal", "cac:LegalMonetaryTotal",
            "cac:InvoiceLine")


def structural_problems(xml: bytes) -> list[str]:
    """UBL-TR's structural rules checked on the serialised document: [] when it passes."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"]
    if root.tag != f"{{{INVOICE_NS}}}Invoice":
        return [f"root element is {root.tag}, not a UBL Invoice"]
    problems = [f"{path} missing" for path in REQUIRED if root.find(path, NS) is None]
    if problems:
        return problems
    if _text(root, "cbc:CustomizationID") != "TR1.2":
        problems.append("CustomizationID is not TR1.2")
    if not NUMBER.match(_text(root, "cbc:ID")):
        problems.append(f"ID {_text(root, 'cbc:ID')!r} is not a GİB number")
    try:
        uuid.UUID(_text(root, "cbc:UUID"))
    except ValueError:
        problems.append("UUID is not a UUID")
    for role in ("AccountingSupplierParty", "AccountingCustomerParty"):
        ident = root.find(f"cac:{role}/cac:Party/cac:PartyIdentification/cbc:ID", NS)
        if ident is None or ident.get("schemeID") not in ("VKN", "TCKN") or not is_valid_tax_id("TR", ident.text):
            problems.append(f"{role}: no VKN/TCKN with valid check digits")
    if _text(root, "cbc:InvoiceTypeCode") == IADE and root.find("cac:BillingReference", NS) is None:
        problems.append("IADE without BillingReference")
    try:
        lines = root.findall("cac:InvoiceLine", NS)
        if int(_text(root, "cbc:LineCountNumeric")) != len(lines):
            problems.append("LineCountNumeric is not the number of lines")
        line_sum = tax_sum = Decimal("0.00")
        for line in lines:
            net = _decimal(line, "cbc:LineExtensionAmount")
            quantity, price = _decimal(line, "cbc:InvoicedQuantity"), _decimal(line, "cac:Price/cbc:PriceAmount")
            if half_up(quantity * price) != net:
                problems.append(f"line {_text(line, 'cbc:ID')}: LineExtensionAmount is not quantity × price")
            tax = _decimal(line, "cac:TaxTotal/cbc:TaxAmount")
            rate = _decimal(line, "cac:TaxTotal/cac:TaxSubtotal/cbc:Percent")
            if half_up(net * rate / 100) != tax:
                problems.append(f"line {_text(line, 'cbc:ID')}: TaxAmount is not {rate}% of {net}")
            line_sum += net
            tax_sum += tax
        subtotals = sum((_decimal(s, "cbc:TaxAmount") for s in root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)),
                        Decimal("0.00"))
        totals = root.find("cac:LegalMonetaryTotal", NS)
        figures = {name: _decimal(totals, f"cbc:{name}") for name in (
            "LineExtensionAmount", "TaxExclusiveAmount", "TaxInclusiveAmount", "AllowanceTotalAmount",
            "PayableAmount")}
        tax_total = _decimal(root, "cac:TaxTotal/cbc:TaxAmount")
        checks = [("LineExtensionAmount = Σ lines", figures["LineExtensionAmount"] == line_sum),
                  ("TaxAmount = Σ subtotals = Σ line taxes", tax_total == subtotals == tax_sum),
                  ("TaxInclusiveAmount = TaxExclusiveAmount + TaxAmount",
                   figures["TaxInclusiveAmount"] == figures["TaxExclusiveAmount"] + tax_total),
                  ("PayableAmount = TaxInclusiveAmount - AllowanceTotalAmount",
                   figures["PayableAmount"] == figures["TaxInclusiveAmount"] - figures["AllowanceTotalAmount"])]
        problems += [f"totals do not add up: {name}" for name, ok in checks if not ok]
    except ValueError as e:
        problems.append(str(e))
    return problems


# from billing's records ----------------------------------------------------------------------------------------
def _person_or_company(header: dict) -> str:
    return str(header["legal_name"]).strip()


def document_from_records(header: dict, lines: list[dict], *, supplier: Party, number: str, ettn: str, profile: str,
                          type_code: str, returned_invoice: tuple[str, date] | None = None) -> InvoiceDocument:
    """The document of one billing invoice (plain records: the header with its customer, its lines). Billing
    writes a credit note's amounts negative; on the document every amount is positive and the type says IADE."""
    invoice_id = str(header["invoice_id"])
    try:
        document_lines = tuple(Line(
            line_no=int(line["line_no"]), description=str(line["description"]),
            quantity=abs(Decimal(str(line["quantity"]))), unit_price=abs(money(line["unit_price_minor"])),
            net=abs(money(line["net_minor"])), vat_rate=Decimal(str(line["vat_rate"])),
            vat=abs(money(line["vat_minor"])))
            for line in lines)
        period = None
        if header.get("period_start") and header.get("period_end"):
            period = (date.fromisoformat(str(header["period_start"])), date.fromisoformat(str(header["period_end"])))
        issue_date = date.fromisoformat(str(header["issue_date"]))
    except (ArithmeticError, ValueError, TypeError) as e:
        raise DocumentError(invoice_id, "lines", f"cannot be read as amounts and dates: {e}") from e
    customer = Party(tax_id=str(header["tax_id"]), name=_person_or_company(header), street=str(header["address"]),
                     city=str(header["city"]))
    return InvoiceDocument(invoice_id=invoice_id, ettn=ettn, number=number, profile=profile, type_code=type_code,
                           issue_date=issue_date, currency=str(header["currency"]), supplier=supplier,
                           customer=customer, lines=document_lines, period=period,
                           returned_invoice=returned_invoice, notes=(f"Billing invoice {invoice_id}",))
