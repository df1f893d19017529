"""`python -m phoenix VERB ...`: the `phoenix` command."""

from phoenix.cli.main import main

raise SystemExit(main())
