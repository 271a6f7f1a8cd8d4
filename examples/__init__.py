"""Copyable examples for platform teams."""
