from x0node.cli import main

raise SystemExit(main())
