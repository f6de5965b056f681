"""Kinds of network object, each with one home."""
