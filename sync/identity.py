"""Identity: e-mail and domain normalisation.

This is the first slice (what scoring needs: the domain of an address and whether it is a free-mail
provider, whose domains never identify a company). Lead-to-account matching and duplicate detection
build on these functions.
"""

from __future__ import annotations

# Consumer mailbox providers: their domains say nothing about the company a person works for.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com", "hotmail.co.uk",
    "outlook.com", "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me",
    "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "qq.com", "163.com",
    "zoho.com", "fastmail.com", "t-online.de", "orange.fr", "free.fr", "libero.it", "btinternet.com",
})


def normalize_email(value: str | None) -> str | None:
    """Trim and lowercase; ``None`` for anything that is not ``local@domain.tld``."""
    if value is None:
        return None
    text = value.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text or domain.startswith(".") or domain.endswith("."):
        return None
    return text


def normalize_domain(value: str | None) -> str | None:
    """``https://www.Acme.com/about`` -> ``acme.com``."""
    if value is None:
        return None
    text = value.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0].split(":", 1)[0].removeprefix("www.").strip(".")
    return text or None


def email_domain(value: str | None) -> str | None:
    email = normalize_email(value)
    return email.rpartition("@")[2] if email else None


def is_free_mail(domain: str | None) -> bool:
    return (normalize_domain(domain) or "") in FREE_MAIL_DOMAINS


__all__ = ["FREE_MAIL_DOMAINS", "email_domain", "is_free_mail", "normalize_domain", "normalize_email"]
