from tunebot.cli import main

raise SystemExit(main())
