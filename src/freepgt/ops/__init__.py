"""Ops scripts: parsing, running, output."""
