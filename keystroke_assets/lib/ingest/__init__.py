"""Parsers of upload objects: names, the web-app keystroke CSV, the Aalto TSV, JSON records."""
