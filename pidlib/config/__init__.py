"""Profiles: YAML files in, one validated frozen configuration out."""
