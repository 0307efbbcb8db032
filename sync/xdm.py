"""IHE XDM media (ITI TF-1 §16, ITI TF-3 §4.2): the ZIP that carries documents by MSSanté.

``build_xdm()`` writes::

    INDEX.HTM                       what the media holds, in French, for a human
    README.TXT                      who made it
    IHE_XDM/SUBSET01/METADATA.XML   the XDS metadata (ebRS SubmitObjectsRequest): one
                                    DocumentEntry per document, the SubmissionSet (with the
                                    intended recipient), HasMember associations
    IHE_XDM/SUBSET01/DOC0001.XML    the eP-MED-DM CDA (when there is one)
    IHE_XDM/SUBSET01/DOC0002.PDF    the order's PDF

Every byte is a function of its inputs (fixed ZIP timestamps), so that a resend of the same
order is the same attachment.

``read_xdm()`` opens a received ZIP defensively and returns its documents; it refuses, with
a clear reason (``DocumentRefused``), too many entries, too large a total or a suspicious
compression ratio (a ZIP bomb), absolute paths or ``..`` (path traversal), encrypted or
symlinked entries, and metadata with a DTD or entities.
"""

from __future__ import annotations

import hashlib
import html
import io
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from lxml import etree

from appliance.errors import DocumentRefused
from sync import codes

SUBSET = "IHE_XDM/SUBSET01"
METADATA = f"{SUBSET}/METADATA.XML"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
MAX_ENTRIES = 64
MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_ENTRY_BYTES = 25 * 1024 * 1024
MAX_RATIO = 100  # uncompressed / compressed, per entry above 1 MB


@dataclass(frozen=True)
class XdmDocument:
    name: str  # file name inside the subset, e.g. DOC0001.XML
    data: bytes
    mime_type: str
    format_code: tuple[str, str, str]
    title: str


@dataclass(frozen=True)
class Submission:
    unique_id: str  # an OID or "2.25.<uuid int>"
    source_id: str
    submitted_at: datetime
    patient_id: str  # "<INS>^^^&<OID>&ISO"
    author_person: str  # XCN: idNat_PS^family^given^^^^^^&1.2.250.1.71.4.2.1&ISO
    author_institution: str  # XON: name^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1<FINESS>
    intended_recipient: str  # the pharmacy's MSSanté address
    created_at: datetime
    title: str


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = etree.SubElement(parent, f"{{{RIM}}}Slot", name=name)
    value_list = etree.SubElement(slot, f"{{{RIM}}}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{{{RIM}}}Value").text = value


def _name(parent: etree._Element, text: str) -> None:
    name = etree.SubElement(parent, f"{{{RIM}}}Name")
    etree.SubElement(name, f"{{{RIM}}}LocalizedString", value=text)


def _classification(parent: etree._Element, scheme: str, obj: str, n: str,
                    code: tuple[str, str, str] | None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{RIM}}}Classification", id=f"{obj}-c{n}",
                            classificationScheme=scheme, classifiedObject=obj,
                            nodeRepresentation=code[0] if code else "",
                            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:"
                                       "RegistryObject:Classification")
    if code:
        _slot(node, "codingScheme", code[2])
        _name(node, code[1])
    return node


def _external_id(parent: etree._Element, scheme: str, obj: str, n: str, value: str,
                 label: str) -> None:
    node = etree.SubElement(parent, f"{{{RIM}}}ExternalIdentifier", id=f"{obj}-e{n}",
                            identificationScheme=scheme, registryObject=obj, value=value,
                            objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:"
                                       "RegistryObject:ExternalIdentifier")
    _name(node, label)


def metadata(sub: Submission, docs: Sequence[XdmDocument]) -> bytes:
    """The XDS metadata of the submission (ebRS 3.0 SubmitObjectsRequest)."""
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    type_code = (codes.LOINC_PRESCRIPTION[0], codes.LOINC_PRESCRIPTION[1], codes.LOINC)
    facility = (*codes.FACILITY_EHPAD, codes.FACILITY_SYSTEM)
    for k, doc in enumerate(docs, start=1):
        obj = f"Document{k:02d}"
        entry = etree.SubElement(objects, f"{{{RIM}}}ExtrinsicObject", id=obj,
                                 mimeType=doc.mime_type, objectType=codes.XDS_DOCUMENT_ENTRY,
                                 status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved")
        _slot(entry, "creationTime", _ts(sub.created_at))
        _slot(entry, "hash", hashlib.sha1(doc.data, usedforsecurity=False).hexdigest())
        _slot(entry, "size", str(len(doc.data)))
        _slot(entry, "languageCode", "fr-FR")
        _slot(entry, "URI", doc.name)
        _slot(entry, "sourcePatientId", sub.patient_id)
        _name(entry, doc.title)
        author = _classification(entry, codes.XDS_AUTHOR, obj, "a", None)
        _slot(author, "authorPerson", sub.author_person)
        _slot(author, "authorInstitution", sub.author_institution)
        _classification(entry, codes.XDS_CLASS_CODE, obj, "1", codes.XDS_CLASS_PRESCRIPTION)
        _classification(entry, codes.XDS_CONFIDENTIALITY, obj, "2",
                        ("N", "Normal", codes.CONFIDENTIALITY))
        _classification(entry, codes.XDS_FORMAT_CODE, obj, "3", doc.format_code)
        _classification(entry, codes.XDS_FACILITY_TYPE, obj, "4", facility)
        _classification(entry, codes.XDS_PRACTICE_SETTING, obj, "5", facility)
        _classification(entry, codes.XDS_TYPE_CODE, obj, "6", type_code)
        _external_id(entry, codes.XDS_DOC_PATIENT_ID, obj, "1", sub.patient_id,
                     "XDSDocumentEntry.patientId")
        _external_id(entry, codes.XDS_DOC_UNIQUE_ID, obj, "2", f"{sub.unique_id}.{k}",
                     "XDSDocumentEntry.uniqueId")
    package = etree.SubElement(objects, f"{{{RIM}}}RegistryPackage", id="SubmissionSet01",
                               objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:"
                                          "RegistryObject:RegistryPackage")
    _slot(package, "submissionTime", _ts(sub.submitted_at))
    _slot(package, "intendedRecipient", f"|{sub.intended_recipient}^^^^^^^^^^^^^^")
    _name(package, sub.title)
    author = _classification(package, codes.XDS_AUTHOR, "SubmissionSet01", "a", None)
    _slot(author, "authorPerson", sub.author_person)
    _slot(author, "authorInstitution", sub.author_institution)
    _classification(package, codes.XDS_CONTENT_TYPE, "SubmissionSet01", "1", type_code)
    _external_id(package, codes.XDS_SET_UNIQUE_ID, "SubmissionSet01", "1", sub.unique_id,
                 "XDSSubmissionSet.uniqueId")
    _external_id(package, codes.XDS_SET_SOURCE_ID, "SubmissionSet01", "2", sub.source_id,
                 "XDSSubmissionSet.sourceId")
    _external_id(package, codes.XDS_SET_PATIENT_ID, "SubmissionSet01", "3", sub.patient_id,
                 "XDSSubmissionSet.patientId")
    etree.SubElement(objects, f"{{{RIM}}}Classification", id="SubmissionSet01-class",
                     classificationNode=codes.XDS_SUBMISSION_CLASS,
                     classifiedObject="SubmissionSet01")
    for k in range(1, len(docs) + 1):
        association = etree.SubElement(
            objects, f"{{{RIM}}}Association", id=f"Association{k:02d}",
            associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            sourceObject="SubmissionSet01", targetObject=f"Document{k:02d}")
        _slot(association, "SubmissionSetStatus", "Original")
    return etree.tostring(request, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _index(sub: Submission, docs: Sequence[XdmDocument]) -> bytes:
    items = "".join(f'<li><a href="{SUBSET}/{d.name}">{html.escape(d.title)}</a> '
                    f"({html.escape(d.mime_type)})</li>" for d in docs)
    return (f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>'
            f"{html.escape(sub.title)}</title></head><body><h1>{html.escape(sub.title)}</h1>"
            f"<p>Support IHE XDM envoyé par MSSanté.</p><ul>{items}</ul>"
            f'<p><a href="{METADATA}">Métadonnées XDS</a> · '
            f'<a href="README.TXT">README.TXT</a></p></body></html>').encode()


def _readme(sub: Submission) -> bytes:
    return ("IHE XDM media (IHE ITI Technical Framework vol. 1 section 16).\r\n"
            "Made by Ordo, e-prescription appliance of the sending establishment.\r\n"
            f"Content: {sub.title}.\r\n"
            f"Submission set: {sub.unique_id}.\r\n"
            f"Documents and XDS metadata: {SUBSET}/ (METADATA.XML).\r\n").encode()


def build_xdm(sub: Submission, docs: Sequence[XdmDocument]) -> bytes:
    """The XDM ZIP bytes (deterministic for the same inputs)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in (("INDEX.HTM", _index(sub, docs)), ("README.TXT", _readme(sub)),
                           (METADATA, metadata(sub, docs)),
                           *((f"{SUBSET}/{d.name}", d.data) for d in docs)):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


# -- reading ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class XdmFile:
    name: str
    mime_type: str
    data: bytes


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")) or \
            (len(name) > 1 and name[1] == ":"):
        raise DocumentRefused(f"ZIP refusé : chemin dangereux {name!r} (traversée de répertoire)")
    if info.flag_bits & 0x1:
        raise DocumentRefused(f"ZIP refusé : entrée chiffrée {name!r}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DocumentRefused(f"ZIP refusé : lien symbolique {name!r}")
    if info.file_size > MAX_ENTRY_BYTES:
        raise DocumentRefused(f"ZIP refusé : {name!r} trop volumineux ({info.file_size} octets)")
    if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DocumentRefused(f"ZIP refusé : taux de compression suspect pour {name!r} "
                         "(bombe de décompression)")


def _read_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read at most the declared size: a lying header cannot inflate more."""
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise DocumentRefused(f"ZIP refusé : {info.filename!r} plus gros que déclaré")
    return data


def read_xdm(data: bytes) -> list[XdmFile]:
    """The documents of a received XDM ZIP (from METADATA.XML, else every XML/PDF file)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DocumentRefused(f"ZIP illisible : {exc}") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise DocumentRefused(f"ZIP refusé : {len(infos)} entrées (au plus {MAX_ENTRIES})")
        total = 0
        for info in infos:
            _check_member(info)
            total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise DocumentRefused(f"ZIP refusé : {total} octets une fois décompressé "
                                  f"(au plus {MAX_TOTAL_BYTES})")
        by_name = {info.filename.replace("\\", "/").upper(): info for info in infos
                   if not info.is_dir()}
        wanted: list[tuple[str, str]] = []
        meta_info = next((i for n, i in by_name.items() if n.endswith("/METADATA.XML")
                          and n.startswith("IHE_XDM/")), None)
        if meta_info is not None:
            from sync.cda import parse_xml

            try:
                meta = parse_xml(_read_limited(archive, meta_info))
            except DocumentRefused as exc:
                raise DocumentRefused(f"METADATA.XML refusé : {exc}") from None
            base = meta_info.filename.replace("\\", "/").rsplit("/", 1)[0]
            for entry in meta.iter(f"{{{RIM}}}ExtrinsicObject"):
                uri = next((s.findtext(f"{{{RIM}}}ValueList/{{{RIM}}}Value") for s in
                            entry.iter(f"{{{RIM}}}Slot") if s.get("name") == "URI"), None)
                if uri:
                    wanted.append((f"{base}/{uri}".upper(), entry.get("mimeType") or ""))
        if not wanted:
            for name in by_name:
                if name.startswith("IHE_XDM/") and name.endswith((".XML", ".PDF")) \
                        and not name.endswith("/METADATA.XML"):
                    wanted.append((name, "application/pdf" if name.endswith(".PDF")
                                   else "text/xml"))
        docs = []
        for name, mime in wanted:
            info = by_name.get(name)
            if info is None:
                raise DocumentRefused(f"ZIP incomplet : {name} annoncé dans METADATA.XML est "
                                      "absent")
            docs.append(XdmFile(name.rsplit("/", 1)[-1], mime,
                                         _read_limited(archive, info)))
        return docs

