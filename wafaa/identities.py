"""Look-alike identities: rules for the addresses and names people are known by.

An admin's email is how everyone (and the login) tells admins apart, so an
address that looks like another must not be accepted: `оwner@acme.example.com`
with a Cyrillic "о" reads as the owner's. Mixed scripts within the local part or
within one domain label are refused (the check is confusable_homoglyphs', from
Unicode's script data); one script throughout (Latin, Arabic, Cyrillic...) is
fine. Names (of admins and tenants) refuse bidirectional controls, which can make
text display in an order other than the one stored ("Trojan Source").
"""

from __future__ import annotations

import unicodedata

import idna
from confusable_homoglyphs import confusables

from wafaa.models.admin import normalize_email

# Unicode's Bidi_Control characters: ALM, LRM, RLM, LRE..RLO, LRI..PDI.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _mixed_script(text: str) -> bool:
    # Digits and punctuation are COMMON: they go with any script.
    return bool(confusables.is_mixed_script(text, allowed_aliases=["COMMON"]))


def email_problem(email: str) -> str | None:
    """Why `email` cannot be an admin's address, or None."""
    normalized = normalize_email(email)
    local, _, domain = normalized.rpartition("@")
    if not local or not domain:
        return "Not a valid email address."
    try:
        labels = idna.decode(domain).split(".")
    except (idna.IDNAError, UnicodeError):
        return "The domain is not a valid internationalised domain name."
    if _mixed_script(local) or any(_mixed_script(label) for label in labels):
        return "The address mixes writing systems (for example Latin and Cyrillic look-alike letters)."
    if any(unicodedata.category(ch).startswith("C") for ch in local):
        return "The address contains control or invisible characters."
    return None


def name_problem(name: str) -> str | None:
    if any(ch in BIDI_CONTROLS for ch in name):
        return "Names must not contain bidirectional control characters."
    # Control characters (Cc: tab, newline, ESC of terminal escape sequences,
    # DEL, C1) have no place in a name and rewrite what a log or a terminal shows.
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "Names must not contain control characters."
    return None
