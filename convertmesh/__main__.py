"""`python -m convertmesh`: the CLI."""

from convertmesh.cli import main

raise SystemExit(main())
