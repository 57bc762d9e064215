"""Masking personal data in reports and logs.

Reports (the dry run, ``leadrelay explain``) and logs show people's data masked by default; an explicit
flag (``reveal=True``) shows it for an authorised audit. A mask keeps just enough for an operator to tell
rows apart and to act: the first character of a name or an address's local part, the whole e-mail domain
(which company, which provider), a phone number's last two digits. Masks have a fixed length, so they do
not leak how long the value was, and masking a masked value changes nothing.

Which fields are personal is decided by the field's name, compared without case, ``_``, ``-``, ``.`` or
spaces (``firstName``, ``first_name`` and Meta's ``FN`` all count): e-mail and phone fields, names, street,
city, postal code, IP address and date of birth. Company-level and coarse fields (country, state, scores,
reasons, ids) stay as they are. Inside a personal field every nested string is masked too (an ``address``
object hides its lines). Free text is not parsed by field; :func:`scrub_text` masks e-mail addresses in it
(log messages, vendors' error messages) and :class:`MaskingFilter` does that for a logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

MASK = "•••"

_EMAIL_IN_TEXT = re.compile(r"[^\s@<>()\[\],;:\"']+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def _already(text: str) -> bool:
    return text.endswith(MASK) and len(text) <= len(MASK) + 1


def mask_text(value: str) -> str:
    """``"Jane"`` -> ``"J•••"``: the first character, then a fixed-length mask."""
    text = value.strip()
    if not text or _already(text):
        return text
    return text[0] + MASK


def mask_email(value: str) -> str:
    """``"jane.doe@acme.com"`` -> ``"j•••@acme.com"``; without an ``@`` it is masked as plain text."""
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        return mask_text(text)
    return f"{mask_text(local)}@{domain.lower()}"


def mask_name(value: str) -> str:
    """``"Jane Doe"`` -> ``"J•••"`` (only the very first initial: two initials narrow a person down)."""
    return mask_text(value)


def mask_phone(value: str) -> str:
    """``"+44 20 7946 0958"`` -> ``"•••58"``; a number of two digits or fewer is masked whole."""
    text = value.strip()
    if re.fullmatch(re.escape(MASK) + r"\d{0,2}", text):
        return text
    digits = re.sub(r"\D", "", text)
    return MASK + (digits[-2:] if len(digits) > 2 else "")


def scrub_text(text: str) -> str:
    """Free text with every e-mail address in it masked (``"bad address jane@acme.com"``)."""
    return _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), text)


_EMAIL_FIELDS = {"email", "emails", "mail", "emailaddress", "emailaddresses"}
_PHONE_FIELDS = {"phone", "phones", "mobile", "mobilenumber", "telephone", "tel", "fax", "cell", "cellphone",
                 "phonenumber", "phonenumbers"}
_TEXT_FIELDS = {
    # names (Meta's FN / LN included)
    "name", "names", "firstname", "lastname", "fullname", "middlename", "givenname", "familyname", "surname",
    "displayname", "contactname", "fn", "ln",
    # where someone lives (Meta's CT)
    "street", "streetaddress", "address", "addresses", "address1", "address2", "addressline1", "addressline2",
    "city", "ct", "town", "zip", "zipcode", "postalcode", "postcode",
    # other direct identifiers
    "ip", "ipaddress", "dob", "dateofbirth", "birthdate", "birthday",
}


def _field(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name).lower()


def _masker(field_name: str) -> Callable[[str], str] | None:
    """How a field is masked, or ``None`` when it is not personal data."""
    name = _field(field_name)
    if name in _EMAIL_FIELDS or name.endswith(("email", "emailaddress")):
        return mask_email
    if name in _PHONE_FIELDS or name.endswith(("phone", "phonenumber")):
        return mask_phone
    if name in _TEXT_FIELDS:
        return mask_text
    return None


def _apply(value: Any, masker: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return masker(value)
    if isinstance(value, bool) or value is None:
        return value  # a flag or an absence says nothing about who someone is
    if isinstance(value, int | float):
        return masker(str(value))  # a ZIP or phone number stored as a number
    if isinstance(value, Mapping):
        return {k: _apply(v, _masker(k) or masker) if isinstance(k, str) else _apply(v, masker)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_apply(v, masker) for v in value)
    return masker(str(value))


def mask_value(field_name: str, value: Any) -> Any:
    """``value`` masked as the field ``field_name`` calls for; values of other fields come back unchanged."""
    masker = _masker(field_name)
    return value if masker is None else _apply(value, masker)


def _walk(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: mask_value(k, v) if isinstance(k, str) and _masker(k) else _walk(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_walk(v) for v in value)
    return value


def mask_record(record: Mapping[str, Any], reveal: bool = False) -> Mapping[str, Any]:
    """A copy of ``record`` with its personal fields masked, nested mappings and lists included.

    ``reveal=True`` (an authorised audit) returns ``record`` itself, unchanged.
    """
    return record if reveal else _walk(record)


class MaskingFilter(logging.Filter):
    """A logging filter that masks e-mail addresses in messages and their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                # A malformed call: logging would print the raw arguments to stderr, so they go scrubbed here.
                message = f"{record.msg} {record.args!r}"
            record.msg, record.args = message, None
        if isinstance(record.msg, str):
            record.msg = scrub_text(record.msg)
        return True


__all__ = ["MASK", "MaskingFilter", "mask_email", "mask_name", "mask_phone", "mask_record", "mask_text",
           "mask_value", "scrub_text"]
