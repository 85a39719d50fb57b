"""What the voucher page says in each language it speaks, for the page tests and the browser tests."""

# What a holder of a gift card with a holder, help and a store finder reads, per language.
LABELS = {
    "en": ["Gift card", "Balance", "Expires 30 Jun 2027", "Voucher holder", "Help", "Find a store"],
    "de": ["Geschenkkarte", "Guthaben", "Gültig bis 30.06.2027", "Gutscheininhaber", "Hilfe"],
    "fr": ["Carte cadeau", "Solde", "Expire le 30 juin 2027", "Titulaire du bon", "Aide"],
    "es": ["Tarjeta regalo", "Saldo", "Caduca el 30 jun 2027", "Titular del vale", "Ayuda"],
    "nl": ["Cadeaukaart", "Saldo", "Geldig tot 30 jun 2027", "Houder van de tegoedbon", "Hulp"],
    "af": ["Geskenkkaart", "Saldo", "Verval op 30 Jun. 2027", "Koeponhouer", "Hulp"],
}
LOCALE_OF = {
    "en": "en-GB",
    "de": "de-DE",
    "fr": "fr-FR",
    "es": "es-ES",
    "nl": "nl-NL",
    "af": "af-ZA",
}
