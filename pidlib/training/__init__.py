"""The embedded tiny-model recipe (a leaf: nothing imports it): ``python -m pidlib.training``."""
