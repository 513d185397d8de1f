"""``python -m minist`` runs the command line."""

from minist.cli import main

raise SystemExit(main())
