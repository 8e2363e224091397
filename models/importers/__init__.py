"""Readers that turn other tools' model descriptions into the graph IR."""
