"""Attribute heads and attribute taxonomies."""
