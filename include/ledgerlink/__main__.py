from ledgerlink.cli import main

raise SystemExit(main())
