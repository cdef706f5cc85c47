"""``python -m pidlib.training``: train, save or evaluate the embedded models."""

from __future__ import annotations

from pidlib.training.run import main

raise SystemExit(main())
