"""Implementations that ship with the core, registered like any plugin."""
